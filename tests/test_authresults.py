"""maild.authresults: DKIM/SPF/DMARC failures from Authentication-Results headers of trusted hosts, on
header samples as Gmail, Exchange, OpenDKIM/OpenDMARC and Postfix write them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.mail.authresults import auth_failures

MX = "mx.example.com"


def mail(*results: str, body: str = "Thanks, fixed.\r\n") -> bytes:
    """A reply carrying the given Authentication-Results values (written as given: folding included)."""
    headers = "".join(f"Authentication-Results: {value}\r\n" for value in results)
    return (
        f"Return-Path: <agent@example.com>\r\n{headers}From: Agent <agent@example.com>\r\n"
        f"To: support@desk.example\r\nSubject: Re: [#42] Printer\r\n\r\n{body}"
    ).encode()


# --- real-world samples -----------------------------------------------------------------------------

GMAIL_PASS = (
    "mx.google.com;\r\n"
    "       dkim=pass header.i=@x.com header.s=20230601 header.b=Ab3dEf9h;\r\n"
    "       spf=pass (google.com: domain of agent@x.com designates 209.85.220.41 as permitted sender)"
    " smtp.mailfrom=agent@x.com;\r\n"
    "       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=x.com"
)


def test_gmail_all_pass() -> None:
    assert auth_failures(mail(GMAIL_PASS), ["mx.google.com"]) == []


def test_gmail_failures() -> None:
    value = (
        "mx.google.com;\r\n"
        "       dkim=pass header.i=@x.com header.s=20230601 header.b=Ab3dEf9h;\r\n"
        "       spf=fail (google.com: domain of agent@x.com does not designate 203.0.113.9 as permitted"
        " sender) smtp.mailfrom=agent@x.com;\r\n"
        "       dmarc=fail (p=REJECT sp=REJECT dis=REJECT) header.from=x.com"
    )
    assert auth_failures(mail(value), ["mx.google.com"]) == [
        "mx.google.com: spf=fail (google.com: domain of agent@x.com does not designate 203.0.113.9 as"
        " permitted sender; smtp.mailfrom=agent@x.com)",
        "mx.google.com: dmarc=fail (p=REJECT sp=REJECT dis=REJECT; header.from=x.com)",
    ]


def test_results_without_separating_semicolon() -> None:
    """Seen in hand-copied and some appliance headers: a registered method starts a new result."""
    value = "mx.google.com; dkim=pass header.i=@x.com header.s=s1 spf=fail smtp.mailfrom=a@x.com"
    assert auth_failures(mail(value), ["mx.google.com"]) == [
        "mx.google.com: spf=fail (smtp.mailfrom=a@x.com)"
    ]


MICROSOFT = (
    "spf=fail (sender IP is 1.2.3.4) smtp.mailfrom=evil.example; dkim=none (message not signed)"
    " header.d=none;dmarc=fail action=none header.from=contoso.com;compauth=fail reason=001"
)


def test_microsoft_with_authserv_id() -> None:
    """Exchange on-premises style: `dkim=none` is no failure, `compauth` is no method of ours, and the
    dot-less `action=` and `reason=` are properties, not new results."""
    assert auth_failures(mail(f"mail.contoso.com; {MICROSOFT}"), ["mail.contoso.com"]) == [
        "mail.contoso.com: spf=fail (sender IP is 1.2.3.4; smtp.mailfrom=evil.example)",
        "mail.contoso.com: dmarc=fail (action=none; header.from=contoso.com)",
    ]


def test_microsoft_without_authserv_id_names_no_host() -> None:
    """Exchange Online omits the authserv-id: `spf` is a method, never a trusted host."""
    assert auth_failures(mail(MICROSOFT), ["spf", "mail.contoso.com"]) == []


def test_opendkim_reason_and_comment() -> None:
    value = (
        f'{MX}; dkim=fail reason="signature verification failed" (2048-bit key)'
        " header.d=example.com header.i=@example.com header.a=rsa-sha256 header.s=mail header.b=Zx9Qw1Lp"
    )
    assert auth_failures(mail(value), [MX]) == [
        f"{MX}: dkim=fail (signature verification failed; 2048-bit key; header.d=example.com;"
        " header.i=@example.com; header.a=rsa-sha256; header.s=mail)"
    ]


def test_opendmarc_and_postfix_spf_headers() -> None:
    """OpenDKIM, OpenDMARC and policyd-spf each add their own header with the same authserv-id."""
    raw = mail(
        f"{MX}; dkim=pass (2048-bit key; unprotected) header.d=example.com",
        f"{MX}; dmarc=fail (p=reject dis=none) header.from=example.com",
        f"{MX}; spf=fail (mailfrom) smtp.mailfrom=example.com (client-ip=198.51.100.7; helo=x)",
    )
    assert auth_failures(raw, [MX]) == [
        f"{MX}: dmarc=fail (p=reject dis=none; header.from=example.com)",
        f"{MX}: spf=fail (mailfrom; smtp.mailfrom=example.com; client-ip=198.51.100.7; helo=x)",
    ]


# --- trust ------------------------------------------------------------------------------------------


def test_untrusted_headers_are_ignored() -> None:
    raw = mail("attacker.example; dkim=pass", f"{MX}; spf=fail smtp.mailfrom=a.example", "evil; dmarc=fail")
    assert auth_failures(raw, [MX]) == [f"{MX}: spf=fail (smtp.mailfrom=a.example)"]
    assert auth_failures(raw, ["other.example"]) == []


def test_untrusted_pass_does_not_rescue_trusted_dkim_fail() -> None:
    raw = mail("attacker.example; dkim=pass header.d=x.com", f"{MX}; dkim=fail header.d=x.com")
    assert auth_failures(raw, [MX]) == [f"{MX}: dkim=fail (header.d=x.com)"]


def test_several_trusted_hosts() -> None:
    raw = mail("relay.example.org; spf=fail", f"{MX}; dmarc=fail")
    assert auth_failures(raw, [MX, "relay.example.org"]) == [
        "relay.example.org: spf=fail",
        f"{MX}: dmarc=fail",
    ]


def test_trusted_id_must_match_whole_token() -> None:
    raw = mail(f"{MX}.attacker.example; dkim=fail", f"x{MX}; spf=fail")
    assert auth_failures(raw, [MX]) == []


@pytest.mark.parametrize("trusted", [[], [""], ["   "], ()])
def test_no_trusted_ids(trusted: list[str]) -> None:
    assert auth_failures(mail(f"{MX}; dkim=fail; spf=fail; dmarc=fail"), trusted) == []


def test_trusted_ids_any_iterable_stripped_case_insensitive() -> None:
    raw = mail("MX.Example.COM; spf=fail")
    assert auth_failures(raw, (t for t in [" mx.example.com\n"])) == ["MX.Example.COM: spf=fail"]


def test_arc_authentication_results_is_another_header() -> None:
    raw = (
        f"ARC-Authentication-Results: i=1; {MX}; dkim=fail\r\n"
        f"X-Authentication-Results: {MX}; spf=fail\r\nSubject: x\r\n\r\nbody\r\n"
    ).encode()
    assert auth_failures(raw, [MX]) == []


def test_only_the_header_block_is_read() -> None:
    raw = mail(body=f"Authentication-Results: {MX}; dkim=fail header.d=x.com\r\n")
    assert auth_failures(raw, [MX]) == []


# --- DKIM with several signatures ---------------------------------------------------------------------


def test_one_broken_one_good_signature_is_authenticated() -> None:
    raw = mail(f"{MX}; dkim=fail (bad signature) header.d=list.example; dkim=pass header.d=x.com")
    assert auth_failures(raw, [MX]) == []


def test_good_signature_does_not_hide_other_failures() -> None:
    raw = mail(f"{MX}; dkim=pass header.d=x.com; dkim=permerror header.d=y.com; dmarc=fail header.from=x.com")
    assert auth_failures(raw, [MX]) == [f"{MX}: dmarc=fail (header.from=x.com)"]


def test_pass_in_another_header_does_not_count() -> None:
    """The rule is per header: another trusted header's pass is another host's (or step's) verdict."""
    raw = mail(f"{MX}; dkim=pass header.d=x.com", f"{MX}; dkim=fail header.d=x.com")
    assert auth_failures(raw, [MX]) == [f"{MX}: dkim=fail (header.d=x.com)"]


def test_every_broken_signature_is_listed() -> None:
    raw = mail(f"{MX}; dkim=fail header.d=a.example; dkim=permerror (no key) header.d=b.example")
    assert auth_failures(raw, [MX]) == [
        f"{MX}: dkim=fail (header.d=a.example)",
        f"{MX}: dkim=permerror (no key; header.d=b.example)",
    ]


@pytest.mark.parametrize(
    "result",
    [
        "spf=softfail",
        "spf=neutral",
        "spf=none",
        "spf=temperror",
        "spf=permerror",
        "dkim=none",
        "dkim=neutral",
        "dkim=temperror",
        "dkim=policy",
        "dmarc=none",
        "dmarc=bestguesspass",
        "iprev=fail",
        "arc=fail",
        "auth=fail",
        "compauth=fail",
    ],
)
def test_other_results_are_no_failures(result: str) -> None:
    assert auth_failures(mail(f"{MX}; {result}"), [MX]) == []


# --- syntax -----------------------------------------------------------------------------------------


def test_folded_header() -> None:
    value = (
        f'\r\n\t{MX};\r\n\tdkim=fail\r\n\t reason="signature did\r\n not verify"\r\n'
        "\theader.d=x.com;\r\n spf=pass"
    )
    assert auth_failures(mail(value), [MX]) == [f"{MX}: dkim=fail (signature did not verify; header.d=x.com)"]


def test_lf_only_mail_folds_too() -> None:
    raw = f"Authentication-Results: {MX};\n  dmarc=fail\n  header.from=x.com\nSubject: x\n\nbody\n".encode()
    assert auth_failures(raw, [MX]) == [f"{MX}: dmarc=fail (header.from=x.com)"]


@pytest.mark.parametrize("value", [f"{MX} 1; spf=fail", f"{MX} 1 ; spf=fail", f"{MX}  1;spf/1=fail"])
def test_version_numbers(value: str) -> None:
    assert auth_failures(mail(value), [MX]) == [f"{MX}: spf=fail"]


def test_comments_may_hold_separators_and_look_alikes() -> None:
    value = f"{MX}; dkim=pass (dkim=fail; was (nested) spf=fail; (deeper (still)) dmarc=fail) header.d=x.com"
    assert auth_failures(mail(value), [MX]) == []


def test_escaped_parentheses_and_quotes() -> None:
    value = f'{MX}; dkim=pass (ip \\( spf=fail) header.d=x.com; dmarc=fail reason="a \\"b\\"; spf=fail"'
    assert auth_failures(mail(value), [MX]) == [f'{MX}: dmarc=fail (a "b"; spf=fail)']


def test_comment_before_the_authserv_id() -> None:
    assert auth_failures(mail(f"(filtered by) {MX} (v1); spf=fail"), [MX]) == [f"{MX}: spf=fail"]


def test_comment_text_is_kept_in_the_reason() -> None:
    value = f"{MX}; dkim=fail (signature did not verify) header.d=x"
    assert auth_failures(mail(value), [MX]) == [f"{MX}: dkim=fail (signature did not verify; header.d=x)"]


def test_quoted_strings_may_hold_separators() -> None:
    value = f'{MX}; dkim=fail reason="body hash; spf=fail (x)" header.d=x.com; spf=pass'
    assert auth_failures(mail(value), [MX]) == [f"{MX}: dkim=fail (body hash; spf=fail (x); header.d=x.com)"]


def test_case_insensitive_methods_and_results() -> None:
    value = f"{MX.upper()}; DKIM=FAIL header.d=X.com; Spf=Fail; DMARC=Pass; dkim=PermError"
    assert auth_failures(mail(value), [MX]) == [
        f"{MX.upper()}: dkim=fail (header.d=X.com)",
        f"{MX.upper()}: spf=fail",
        f"{MX.upper()}: dkim=permerror",
    ]


def test_uppercase_pass_rescues_dkim() -> None:
    assert auth_failures(mail(f"{MX}; dkim=FAIL; DKIM=PASS"), [MX]) == []


@pytest.mark.parametrize("value", [f"{MX}; none", f"{MX} 1; none", f"{MX};none", f"{MX}; none (no checks)"])
def test_none(value: str) -> None:
    assert auth_failures(mail(value), [MX]) == []


def test_properties_after_a_semicolon_belong_to_no_result() -> None:
    assert auth_failures(mail(f"{MX}; dkim=fail; header.d=x.com"), [MX]) == [f"{MX}: dkim=fail"]


def test_unclosed_comment_runs_to_the_end() -> None:
    assert auth_failures(mail(f"{MX}; spf=fail (sender IP is 1.2.3.4"), [MX]) == [
        f"{MX}: spf=fail (sender IP is 1.2.3.4)"
    ]


def test_long_details_are_cut_to_200_characters() -> None:
    value = f'{MX}; dkim=fail reason="{"x" * 500}" header.d=x.com'
    (line,) = auth_failures(mail(value), [MX])
    assert len(line) == 200
    assert line.startswith(f"{MX}: dkim=fail (xxx")
    assert line.endswith("x…")


def test_non_utf8_header_bytes() -> None:
    raw = b"Authentication-Results: mx.example.com; spf=fail (\xff\xfe caf\xe9) smtp.mailfrom=x\r\n\r\n"
    (line,) = auth_failures(raw, [MX])
    assert line.startswith(f"{MX}: spf=fail (")
    assert line.endswith("; smtp.mailfrom=x)")


@pytest.mark.parametrize(
    "value",
    [
        "",
        ";",
        ";;; dkim=fail",
        f"; {MX}; dkim=fail",
        "= = = ;",
        f"{MX}; dkim=",
        f"{MX}; =fail",
        f"{MX}; dkim fail",
        f"{MX}; dkim=(fail)",
        f"{MX}; dkim=;spf= ;dmarc",
        f"{MX}=fail; dkim=fail",
        f'"{MX}; dkim=fail',
        f"({MX}; dkim=fail",
        f"{MX}; dkim = ; = fail",
        '\\\\\\(((()))))"',
    ],
)
def test_malformed_headers_yield_nothing(value: str) -> None:
    assert auth_failures(mail(value), [MX]) == []


_PIECES = st.sampled_from(
    [MX, ";", "=", "(", ")", '"', "\\", " ", "\r\n ", "dkim", "spf", "dmarc", "fail", "pass", "none",
     "permerror", "reason", "header.d", "1", "/", "é", "\x00"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, max_size=30))
def test_never_raises(pieces: list[str]) -> None:
    failures = auth_failures(mail(f"{MX}; " + "".join(pieces)), [MX])
    assert all(isinstance(line, str) and line.startswith(f"{MX}: ") and len(line) <= 200 for line in failures)
