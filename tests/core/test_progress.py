"""Progress bars: on a terminal by default, off otherwise, forced by progress=True/False."""

import io
import sys

import pytest

from fastsuper import testing as T


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_default_follows_stderr(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert T.progress_enabled(None) is False
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert T.progress_enabled(None) is True
    assert T.progress_enabled(False) is False
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert T.progress_enabled(True) is True


def test_bad_progress_is_a_type_error():
    with pytest.raises(TypeError, match="progress must be True or False, got 'yes'"):
        T.progress_enabled("yes")


def test_bar_writes_to_stderr_only_when_enabled(capsys):
    with T.progress_bar(4, "demo", unit="items") as bar:
        bar.update(4)
        bar.set_postfix_str("all done")
    err = capsys.readouterr().err
    assert "demo 4/4 items 100%" in err and "all done" in err
    with T.progress_bar(4, "demo", unit="items", enabled=False) as bar:
        bar.update(4)
        bar.write("a line")
    assert capsys.readouterr() == ("", "")
