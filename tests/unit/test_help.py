"""`python -m bot --help`, and each command's, is for a person at a terminal: plain text,
with no reStructuredText markup and no source paths (the docstrings are for the code)."""

from __future__ import annotations

import re

import pytest

from bot.__main__ import main


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_every_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    top = help_of(capsys)
    listed = re.search(r"\{([a-z,-]+)\}", top)
    assert listed
    commands = listed.group(1).split(",")
    assert {"run", "demo", "check-config", "manifest", "decide", "audit"} <= set(commands)
    for argv in [[], *([c] for c in commands)]:
        text = help_of(capsys, *argv)
        assert "`" not in text, argv  # ``literal`` markup, or Slack's `code`
        assert "::" not in text, argv
        assert not re.search(r"[\w/]+\.py\b", text), argv  # bot/cli.py and the like
        # after the usage, every command says what it does, in words
        said = text.split("\n\n")[1]
        assert not said.startswith(("options:", "positional arguments:")), argv
