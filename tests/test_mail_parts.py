"""The part cap of the e-mail intake (jiesu/channels/mail.py, ``_PartCap``): a mail of more
than PARTS_MAX MIME parts is refused when the parser meets the part past it, not after parsing
all of them, and a mail at the limit reads as before — whatever its structure (nested
multiparts, a forwarded message/rfc822, a text quoting another mail's delimiter lines, quoted
or RFC 2231 boundaries, trailing whitespace, LF-only lines). The standard library's full parse
(``walk()``, what check_parts counts) is the oracle. Also the headers the header parser reads
(``_Policy``): each value parsed once, shapes no mail client writes refused unparsed."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from email import policy
from email.header import Header
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import encode_rfc2231

import pytest

from jiesu.channels.mail import (
    COMMENTS_MAX,
    HEADER_MAX,
    PARTS_MAX,
    SEPARATORS_MAX,
    STRUCTURED_MAX,
    Malformed,
    TooLarge,
    parse,
)

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


def _description(length: int, linesep: str, folded: bool) -> str:
    """A Content-Description header (one the intake never parses: a part's Content-* headers
    it parses are held to STRUCTURED_MAX, below HEADER_MAX) whose value, as the parser reads
    it (the line breaks of a folded value counted), is ``length`` characters: encoded words,
    on one line or folded after each word."""
    gap = f"{linesep} " if folded else " "
    words: list[str] = []
    while len(gap.join(words)) < length - 40:
        words.append("=?utf-8?q?ab?=")
    filler = length - len(gap.join([*words, "=?utf-8?q??="]))
    words.append(f"=?utf-8?q?{'a' * filler}?=")
    value = gap.join(words)
    assert len(value) == length
    return f"Content-Description: {value}{linesep}"


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
        named = (
            f"Content-Type: text/plain; name=a.txt{linesep}"
            f"{_description(length, linesep, folded)}{linesep}named file{linesep}"
        )
        content = multipart("mixed", "boundary=XX", "XX", [TEXT, named.replace(linesep, "\n")])
        if forwarded:
            rfc822 = f"Content-Type: message/rfc822\n\n{message(content, 'the original')}"
            content = multipart("mixed", "boundary=FW", "FW", [TEXT, rfc822])
        return message(content).replace("\n", linesep).encode()

    at_limit = raw(HEADER_MAX)
    report = parse(at_limit, SENDER)
    full = BytesParser(policy=policy.default).parsebytes(at_limit)
    named = list(full.walk())[-1]
    assert len(named["Content-Description"]) > HEADER_MAX // 10
    assert report.subject == "fifty parts"
    assert [(a.filename, a.content) for a in report.attachments] == [
        (" ".join(p.get_filename().split())[:200], p.get_payload(decode=True))
        for p in full.iter_attachments()
        if not forwarded  # (a forwarded mail is no file: its parts stay in it)
    ]
    parsed_values.clear()
    with pytest.raises(TooLarge, match=f"^{LONG_HEADER}$"):
        parse(raw(HEADER_MAX + 1), SENDER)
    assert parsed_values and max(map(len, parsed_values)) < HEADER_MAX // 10


def test_each_header_value_is_parsed_once(parsed_values: list[str]) -> None:
    """The standard library parses a header again on every get(): one part's Content-Type was
    parsed 7 times in one parse() (by the parser, get_body, iter_attachments, _content_type),
    41 header parses for this 3-part mail. Now each value once (9)."""
    raw = message(multipart("mixed", "boundary=XX", "XX", [TEXT, *attachments(2)]))
    report = parse(raw.replace("\n", "\r\n").encode(), SENDER)
    assert [a.filename for a in report.attachments] == ["f0.bin", "f1.bin"]
    assert [v for v, n in Counter(parsed_values).items() if n > 1] == []
    assert "multipart/mixed; boundary=XX" in parsed_values


# Each header the intake parses: a value at a limit, which reads, and (n=1) one more character,
# comment or separator, which is refused. Built around a valid value (From, a Content-Type...).
def _separated(head: str, unit: str, tail: str, n: int) -> str:
    """head + unit... + tail with SEPARATORS_MAX + n RFC 5322 specials and spaces (each unit
    one, counted here the way the docs of _Policy say)."""

    def count(value: str) -> int:
        return sum(value.count(c) for c in '()<>[]:;@\\,." \t')

    assert count(unit) == 1
    value = head + unit * (SEPARATORS_MAX + n - count(head + tail)) + tail
    assert count(value) == SEPARATORS_MAX + n
    return value


SHAPES: dict[str, tuple[str, type[Malformed], Callable[[int], str]]] = {
    "long Content-Type": ("Content-Type", TooLarge, lambda n: (
        "text/plain; name=a.txt; x=" + "a" * (STRUCTURED_MAX["Content-Type"] + n - 26))),
    "long Content-Transfer-Encoding": ("Content-Transfer-Encoding", TooLarge, lambda n: (
        "x-" + "a" * (STRUCTURED_MAX["Content-Transfer-Encoding"] + n - 2))),
    "comments in Content-Type": ("Content-Type", Malformed, lambda n: (
        "text/plain; name=a.txt " + "(c)" * (COMMENTS_MAX + n))),
    "parameters in Content-Disposition": ("Content-Disposition", Malformed, lambda n: (
        _separated("attachment;filename=a_txt", ";a=b", "", n))),
    "commas in From": ("From", Malformed, lambda n: (
        _separated('"zhang', ",", f'" <{SENDER}>', n))),
    "comments in Message-ID": ("Message-ID", Malformed, lambda n: (
        "<a@citizen.test> " + "(c)" * (COMMENTS_MAX + n))),
}  # fmt: skip


def _shaped(header: str, value: str) -> bytes:
    """A mail with that header: the top-level one for From and Message-ID, else the
    attachment's."""
    top = {"From": f"From: {SENDER}", "Message-ID": "Message-ID: <b@citizen.test>"}
    top[header] = f"{header}: {value}"
    part = {
        "Content-Type": "Content-Type: text/plain; name=a.txt",
        "Content-Disposition": "Content-Disposition: attachment; filename=a.txt",
        "Content-Transfer-Encoding": "Content-Transfer-Encoding: base64",
    }
    part[header] = f"{header}: {value}"
    raw = (
        f"{top['From']}\nSubject: shapes\n{top['Message-ID']}\nMIME-Version: 1.0\n"
        + multipart("mixed", "boundary=XX", "XX", [TEXT, "\n".join(part.values()) + "\n\nQQ==\n"])
    )
    return raw.replace("\n", "\r\n").encode()


@pytest.mark.parametrize("shape", SHAPES)
def test_a_structured_header_past_its_shape_is_refused_unparsed(
    shape: str, parsed_values: list[str]
) -> None:
    """Under HEADER_MAX still, the header parser's time grows worse than linearly with a
    value's comments and separators (49 parts whose Content-* headers were 8 KiB of "(c)":
    81 s of CPU, accepted). At the limit the mail is read; one past it, it is refused before
    that value is parsed."""
    header, refusal, value = SHAPES[shape]
    reason = {
        TooLarge: f"the mail's {header} header is longer than {STRUCTURED_MAX.get(header)}"
        " characters",
        Malformed: f"a header of the mail has more than ({SEPARATORS_MAX} spaces or punctuation"
        f" marks|{COMMENTS_MAX} comments \\(parentheses\\))",
    }[refusal]
    at_limit = _shaped(header, value(0))
    report = parse(at_limit, SENDER)
    full = BytesParser(policy=policy.default).parsebytes(at_limit)
    assert report.address == SENDER
    assert [a.content for a in report.attachments] == [
        p.get_payload(decode=True) for p in full.iter_attachments()
    ]
    parsed_values.clear()
    with pytest.raises(refusal, match=f"^{reason}$"):
        parse(_shaped(header, value(1)), SENDER)
    assert value(1) not in parsed_values


# What real clients send for the longest Chinese filename (255 characters, RFC 2231
# percent-encoded: 2.3 KB), and a long thread's References (100 Message-IDs: 6.7 KB).
LONG_NAME = ("关于朝阳区某街道某小区三号楼北侧夜间施工噪音扰民问题的投诉及补充材料" * 8)[:251]
LONG_NAME += ".pdf"


def _sections(name: str, size: int) -> str:
    """filename*0*=UTF-8''...; filename*1*=... on folded lines (Thunderbird, Apple Mail), a
    section at most ``size`` characters (whole %XX)."""
    encoded = re.findall("%..|.", encode_rfc2231(name, "UTF-8").split("''", 1)[1])
    chunks = ["".join(encoded[i : i + size // 3]) for i in range(0, len(encoded), size // 3)]
    return "attachment;" + ";".join(
        f"\n filename*{i}*={'UTF-8' + chr(39) * 2 if i == 0 else ''}{chunk}"
        for i, chunk in enumerate(chunks)
    )


def test_a_long_chinese_filename_and_a_long_references_chain_are_read(
    parsed_values: list[str],
) -> None:
    """Real long headers stay under the limits: the filename as the standard library writes
    it, in 40-character sections, and as encoded words; References is never parsed, and each
    long filename once."""
    built = EmailMessage(policy=policy.SMTP)
    built["From"] = f"=?utf-8?b?5byg5LyfIOWMl+S6rOW4guacnemYs+WMug==?= <{SENDER}>"
    built["Subject"] = "夜间施工噪音"
    built["Message-ID"] = "<CAF=Yx+a7b8c9d0e1f2g3h4i5j6k7l8m9n0@mail.gmail.com>"
    references = " ".join(f"<{i:040d}.thread@mail.example.com>" for i in range(100))
    built["References"] = references
    built.set_content("三号楼北侧夜间施工，噪音扰民。")
    built.add_attachment(b"%PDF-1", maintype="application", subtype="pdf", filename=LONG_NAME)
    raw = built.as_bytes()
    sectioned = (
        "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
        f"Content-Disposition: {_sections(LONG_NAME, 40)}\n\nJVBERi0y\n"
    )
    words = Header(LONG_NAME, "utf-8").encode()
    encoded = (
        f'Content-Type: application/pdf;\n name="{words}"\nContent-Transfer-Encoding: base64\n'
        f'Content-Disposition: attachment;\n filename="{words}"\n\nJVBERi0z\n'
    )
    raw = raw.replace(b"\r\n--", b"\r\n" + b"\r\n".join(
        f"--{built.get_boundary()}\n{p}".replace("\n", "\r\n").encode()
        for p in (sectioned, encoded)) + b"\r\n--", 1)  # fmt: skip
    parsed_values.clear()
    report = parse(raw, SENDER)
    assert [(a.filename, a.content) for a in report.attachments] == [
        (LONG_NAME[:200], b"%PDF-2"), (LONG_NAME[:200], b"%PDF-3"), (LONG_NAME[:200], b"%PDF-1")
    ]  # fmt: skip
    assert report.subject == "夜间施工噪音" and report.name == "张伟 北京市朝阳区"
    assert not [v for v in parsed_values if "thread@" in v]
    filenames = [v for v in parsed_values if "filename" in v]
    assert len(filenames) == len(set(filenames)) == 3
