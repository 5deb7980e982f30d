"""The part cap of the e-mail intake (jiesu/channels/mail.py, ``_PartCap``): a mail of more
than PARTS_MAX MIME parts is refused when the parser meets the part past it, not after parsing
all of them, and a mail at the limit reads as before — whatever its structure (nested
multiparts, a forwarded message/rfc822, a text quoting another mail's delimiter lines, quoted
or RFC 2231 boundaries, trailing whitespace, LF-only lines). The standard library's full parse
(``walk()``, what check_parts counts) is the oracle."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from jiesu.channels.mail import PARTS_MAX, TooLarge, parse

SENDER = "zhang@citizen.test"
TOO_MANY = re.escape(f"the mail has more than {PARTS_MAX} parts (attachments)")
TEXT = "Content-Type: text/plain; charset=utf-8\n\nThe lamp at No. 12 is out.\n"


@pytest.fixture
def messages_made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[None]]:
    """One item for each EmailMessage built (each MIME part the parser met)."""
    made: list[None] = []
    init = EmailMessage.__init__

    def counted(self: EmailMessage, *args: object, **kwargs: object) -> None:
        made.append(None)
        init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(EmailMessage, "__init__", counted)
    yield made


def walked(raw: bytes) -> int:
    """What check_parts counts, from the standard library's full parse."""
    return len(list(BytesParser(policy=policy.default).parsebytes(raw).walk()))


def attachments(n: int) -> list[str]:
    return [
        "Content-Type: application/octet-stream\nContent-Disposition: attachment;"
        f" filename=f{i}.bin\nContent-Transfer-Encoding: base64\n\nQQ==\n"
        for i in range(n)
    ]


def multipart(subtype: str, declared: str, boundary: str, parts: list[str], *,
              before: str = "", after: str = "") -> str:  # fmt: skip
    """A multipart part: its Content-Type (boundary parameter as ``declared``), then the
    parts, each delimiter line ending in ``after`` (whitespace, allowed by RFC 2046)."""
    body = "".join(f"--{boundary}{after}\n{part}" for part in parts)
    return (
        f"Content-Type: multipart/{subtype}; {declared}\n\n{before}{body}--{boundary}--{after}\n"
    )


def message(content: str, subject: str = "fifty parts") -> str:
    return (
        f"From: Zhang Wei <{SENDER}>\nTo: 12345@qinghe.test\nSubject: {subject}\n"
        f"Message-ID: <{uuid.uuid4().hex}@citizen.test>\nMIME-Version: 1.0\n{content}"
    )


def flat(n: int) -> str:
    return message(multipart("mixed", "boundary=XX", "XX", [TEXT, *attachments(n)]))


def nested(n: int) -> str:
    html = "Content-Type: text/html\n\n<p>The lamp at No. 12 is out.</p>\n"
    alternative = multipart("alternative", "boundary=alt", "alt", [TEXT, html])
    files = multipart("mixed", "boundary=files", "files", attachments(n))
    return message(multipart("mixed", "boundary=outer", "outer", [alternative, files]))


def forwarded(n: int) -> str:
    """The files are in a forwarded mail (message/rfc822): its parts count as well."""
    original = message(multipart("mixed", "boundary=YY", "YY", [TEXT, *attachments(n)]),
                       subject="the original")  # fmt: skip
    rfc822 = f"Content-Type: message/rfc822\nContent-Disposition: inline\n\n{original}"
    return message(multipart("mixed", "boundary=XX", "XX", [TEXT, rfc822]))


QUOTED_SOURCE = (
    "Content-Type: multipart/mixed; boundary=QQ\n\n"
    + "--QQ\nContent-Type: text/plain\n\nq\n" * 60
    + "--QQ--\n"
)


def quoted(n: int) -> str:
    """A text quoting another mail's source (boundary=QQ and 60 delimiter lines of it), and
    lines that look like ours and are not (another case, indented, quoted, longer), and the
    source as a text attachment again: none of them makes a part. (Why the cap is the
    parser's own count, not delimiter lines of declared boundaries found in the raw bytes:
    there are 120 of --QQ here.)"""
    text = (
        "Content-Type: text/plain\n\nI wrote before:\n"
        + QUOTED_SOURCE
        + "--xx\n --XX\n> --XX\n--XXY\n--XX--Y\n"
    )
    source = (
        f"Content-Type: text/plain; name=old.eml\nContent-Disposition: attachment\n\n"
        f"{QUOTED_SOURCE}"
    )
    return message(multipart("mixed", "boundary=XX", "XX", [text, source, *attachments(n)]))


def quoted_parameters(n: int) -> str:
    """A quoted boundary with a space, colon and '=' in it, the parameter's name in capitals
    on a folded line, delimiters followed by whitespace, and an RFC 2231 boundary split in two
    (boundary*0, boundary*1) inside."""
    related = multipart("related", 'boundary*0="rel"; boundary*1="ated"', "related",
                        attachments(n))  # fmt: skip
    return message(multipart("mixed", '\n\tBOUNDARY="=_a b:c"', "=_a b:c", [TEXT, related],
                             after=" \t"))  # fmt: skip


def repeated_delimiters(n: int) -> str:
    """60 delimiter lines in a row make one part, not 60 (the parser skips repeated ones)."""
    return message(multipart("mixed", "boundary=XX", "XX", [TEXT, *attachments(n)],
                             before="preamble\n" + "--XX\n" * 60))  # fmt: skip


@pytest.mark.parametrize("linesep", ["\r\n", "\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize(
    "build", [flat, nested, forwarded, quoted, quoted_parameters, repeated_delimiters]
)
def test_a_mail_at_the_part_limit_is_read_and_one_past_it_refused_at_that_part(
    build: Callable[[int], str], linesep: str, messages_made: list[None]
) -> None:
    """At PARTS_MAX parts (as check_parts counts them) the mail reads as the standard library
    reads it; one more part is refused as before; 500 more are refused at the 51st part, the
    parser never building the others."""

    def raw(n: int) -> bytes:
        return build(n).replace("\n", linesep).encode()

    filler = PARTS_MAX - walked(raw(0))
    at_limit = raw(filler)
    assert walked(at_limit) == PARTS_MAX
    report = parse(at_limit, SENDER)
    full = BytesParser(policy=policy.default).parsebytes(at_limit)
    assert report.subject == "fifty parts"
    assert report.text == full.get_body(preferencelist=("plain",)).get_content().strip()
    assert [a.filename for a in report.attachments] == [
        p.get_filename() for p in full.iter_attachments() if not p.is_multipart()
    ]
    one_more = raw(filler + 1)
    assert walked(one_more) == PARTS_MAX + 1
    with pytest.raises(TooLarge, match=f"^{TOO_MANY}$"):
        parse(one_more, SENDER)
    many = raw(filler + 500)
    messages_made.clear()
    with pytest.raises(TooLarge, match=f"^{TOO_MANY}$"):
        parse(many, SENDER)
    assert len(messages_made) <= PARTS_MAX + 1


def test_the_hostile_mail_is_refused_at_its_51st_part(messages_made: list[None]) -> None:
    """The mail of test_mail.py's hostile test (40,000 four-byte attachments, 5.5 MB): parsed
    in full it cost 7 to 9 s of CPU before check_parts refused it, and under load the sender's
    30 s timeout came first. Now the parser stops at the 51st part."""
    raw = (
        message(multipart("mixed", "boundary=XX", "XX", [TEXT, *attachments(40_000)]))
        .replace("\n", "\r\n").encode()
    )  # fmt: skip
    assert len(raw) < 10 * 1024 * 1024
    messages_made.clear()
    with pytest.raises(TooLarge, match=f"^{TOO_MANY}$"):
        parse(raw, SENDER)
    assert len(messages_made) <= PARTS_MAX + 1


def test_a_long_header_among_the_first_parts_is_still_the_answer(
    messages_made: list[None],
) -> None:
    """check_parts names a part's over-long header before the part count when that part comes
    first: so does the refusal at the 51st part."""
    long_name = 'Content-Type: text/plain; name="' + "a" * 9000 + '"\n\nlong\n'
    raw = message(
        multipart("mixed", "boundary=XX", "XX", [TEXT, long_name, *attachments(500)])
    ).encode()
    messages_made.clear()
    with pytest.raises(TooLarge, match=r"^a header of the mail is longer than 8 KiB$"):
        parse(raw, SENDER)
    assert len(messages_made) <= PARTS_MAX + 1
