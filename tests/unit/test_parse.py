"""The /deploy argument parser: every refusal says what was wrong."""

import pytest

from graphs.deploy import UsageError, parse_args

ENVS = ("staging", "prod")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api 1.4.2 prod", ("api", "1.4.2", "prod")),
        ("api 1.4.2", ("api", "1.4.2", "staging")),
        ("  web-2   v1.4.2-rc.1   staging ", ("web-2", "v1.4.2-rc.1", "staging")),
        ("a 0.0.1+build.7", ("a", "0.0.1+build.7", "staging")),
    ],
)
def test_accepts(text: str, expected: tuple[str, str, str]) -> None:
    a = parse_args(text, ENVS)
    assert (a.service, a.version, a.env) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "Tell me what to deploy"),
        ("api", "Missing the version"),
        ("api 1.4.2 prod extra", "Too many arguments"),
        ("API 1.4.2", "service name"),
        ("-api 1.4.2", "service name"),
        ("a" * 64 + " 1.4.2", "service name"),
        ("api 1.4", "version must look like"),
        ("api latest", "version must look like"),
        ("api 1.4.2;rm", "version must look like"),
        ("api 1.4.2 qa", "Valid environments: staging, prod"),
        ("api 1.4.2 <!channel>", "Unknown environment"),
    ],
)
def test_refuses_with_reason(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_args(text, ENVS)


def test_error_text_never_echoes_user_input() -> None:
    """The usage text is sent back as mrkdwn; user input in it could ping <!channel>."""
    with pytest.raises(UsageError) as err:
        parse_args("api 1.4.2 <!channel>", ENVS)
    assert "<!" not in str(err.value)
