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
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from jiesu.channels.mail import HEADER_MAX, PARTS_MAX, TooLarge, parse

SENDER = "zhang@citizen.test"
TOO_MANY = re.escape(f"the mail has more than {PARTS_MAX} parts (attachments)")
LONG_HEADER = re.escape(f"a header of the mail is longer than {HEADER_MAX // 1024} KiB")
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


@pytest.fixture
def parsed_values(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each header value given to the header parser (policy.header_factory, whose time and
    memory are quadratic in its length), line breaks removed. One over HEADER_MAX is parsed
    as empty instead, so that a test of a 200 KB header fails in milliseconds, not seconds."""
    values: list[str] = []
    factory = HeaderRegistry.__call__

    def recorded(self: HeaderRegistry, name: str, value: str) -> object:
        values.append(value)
        return factory(self, name, "" if len(value) > HEADER_MAX else value)

    monkeypatch.setattr(HeaderRegistry, "__call__", recorded)
    return values


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


def test_a_part_s_200_kb_content_type_is_refused_before_it_is_parsed(
    parsed_values: list[str],
) -> None:
    """check_headers reads only the top-level header block, and check_parts a part's headers
    after the parse — which had parsed each part's Content-Type (the parser asks for it): a
    196 KB one took 6 s of CPU and 1.4 GB. Now the parser refuses it as it reads it."""
    long_type = 'Content-Type: text/plain; name="' + "=?utf-8?q?a?= " * 14_000 + '"\n\nx\n'
    raw = message(multipart("mixed", "boundary=XX", "XX", [TEXT, long_type]))
    raw_bytes = raw.replace("\n", "\r\n").encode()
    assert len(raw_bytes) > 196_000
    with pytest.raises(TooLarge, match=f"^{LONG_HEADER}$"):
        parse(raw_bytes, SENDER)
    assert parsed_values, "the top-level Content-Type is parsed"
    assert max(map(len, parsed_values)) <= HEADER_MAX


def _content_type(length: int, linesep: str, folded: bool) -> str:
    """A Content-Type header whose value, as the parser reads it (the line breaks of a folded
    value counted), is ``length`` characters: a name of encoded words, on one line or folded
    after each word."""
    gap = f"{linesep} " if folded else " "
    head, tail = 'text/plain; charset=utf-8; name="', '"'
    words = []
    while len(head + gap.join(words) + tail) < length - 40:
        words.append("=?utf-8?q?ab?=")
    filler = length - len(head + gap.join([*words, "=?utf-8?q??="]) + tail)
    words.append(f"=?utf-8?q?{'a' * filler}?=")
    value = head + gap.join(words) + tail
    assert len(value) == length
    return f"Content-Type: {value}{linesep}"


@pytest.mark.parametrize("linesep", ["\r\n", "\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("folded", [False, True], ids=["one-line", "folded"])
@pytest.mark.parametrize("forwarded", [False, True], ids=["part", "forwarded-part"])
def test_a_part_s_header_at_the_limit_is_read_and_one_past_it_refused_unparsed(
    linesep: str, folded: bool, forwarded: bool, parsed_values: list[str]
) -> None:
    """A header of HEADER_MAX characters in a part (or in a forwarded mail's part) reads as
    the standard library reads it; one more character is refused as before (check_parts's
    measure: the raw value, line breaks of a folded one included) — and is never parsed."""

    def raw(length: int) -> bytes:
        named = f"{_content_type(length, linesep, folded)}{linesep}named file{linesep}"
        content = multipart("mixed", "boundary=XX", "XX", [TEXT, named.replace(linesep, "\n")])
        if forwarded:
            rfc822 = f"Content-Type: message/rfc822\n\n{message(content, 'the original')}"
            content = multipart("mixed", "boundary=FW", "FW", [TEXT, rfc822])
        return message(content).replace("\n", linesep).encode()

    at_limit = raw(HEADER_MAX)
    report = parse(at_limit, SENDER)
    full = BytesParser(policy=policy.default).parsebytes(at_limit)
    named = list(full.walk())[-1]
    assert len(named["Content-Type"].params["name"]) > HEADER_MAX // 10
    assert report.subject == "fifty parts"
    assert [(a.filename, a.content) for a in report.attachments] == [
        (" ".join(p.get_filename().split())[:200], p.get_payload(decode=True))
        for p in full.iter_attachments()
        if not forwarded  # (a forwarded mail is no file: its parts stay in it)
    ]
    parsed_values.clear()
    with pytest.raises(TooLarge, match=f"^{LONG_HEADER}$"):
        parse(raw(HEADER_MAX + 1), SENDER)
    assert parsed_values and not [v for v in parsed_values if "name=" in v]
