"""Open311 GeoReport v2 at /open311/v2/ (issue 12 part 4): the spec's example documents and
Jiesu's answers validate against the schemas written from the spec (tests/open311/); a point
is placed in its grid; errors are the spec's error documents; a refused request files
nothing."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jsonschema
import pytest
import xmlschema
from helpers import OPERATOR, SUPERVISOR, department, eventually, register, served
from temporalio.client import Client

from api.main import create_app
from jiesu.config import Settings
from jiesu.ops.demo_data import demo_key, grid_centre

HERE = Path(__file__).parent / "open311"
XSD = xmlschema.XMLSchema(HERE / "georeport-v2.xsd")
JSON_SCHEMA = json.loads((HERE / "georeport-v2.schema.json").read_text(encoding="utf-8"))
V2 = "/open311/v2"
KEY = demo_key("demo-operator").key
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}

# spec example → the schema's document it is an example of
EXAMPLES = {"services": "services", "service_definition": "service_definition",
            "post_request": "created_requests", "token": "tokens", "requests": "requests",
            "errors": "errors"}


def spec_json(text: str) -> Any:
    """The spec's JSON examples write codes as numbers with leading zeros ("service_code":001),
    which JSON does not allow: quote them (a string code is what the XML example says)."""
    return json.loads(re.sub(r'("\w+":\s*)(0\d+)\b', r'\1"\2"', text))


def valid_json(document: Any, kind: str) -> None:
    jsonschema.Draft202012Validator({**JSON_SCHEMA, "$ref": f"#/$defs/{kind}"}).validate(document)


def valid(response: httpx.Response, kind: str) -> Any:
    """Validate an answer against the schema of its format; return the JSON or XML tree."""
    if response.request.url.path.endswith(".xml"):
        assert response.headers["content-type"] == "text/xml; charset=utf-8"
        assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
        XSD.validate(response.text)
        return XSD.to_dict(response.text)
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    valid_json(response.json(), kind)
    return response.json()


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_specs_examples_validate(example: str) -> None:
    XSD.validate(HERE / "spec" / f"{example}.xml")
    valid_json(spec_json((HERE / "spec" / f"{example}.json").read_text()), EXAMPLES[example])


def test_the_schemas_refuse_what_the_spec_does_not_allow() -> None:
    """The schemas can fail: a status the spec does not have, a request without its id."""
    with pytest.raises(jsonschema.ValidationError):
        valid_json([{"service_request_id": "1", "status": "pending", "service_name": "x",
                     "service_code": "x", "requested_datetime": None,
                     "updated_datetime": None}], "requests")
    with pytest.raises(jsonschema.ValidationError):
        valid_json([{"service_request_id": "1", "token": "2"}], "created_requests")
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        XSD.validate("<errors><error><code>x</code><description/></error></errors>")


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_services_are_the_categories(api: httpx.AsyncClient, fmt: str) -> None:
    listed = valid(await api.get(f"{V2}/services.{fmt}"), "services")
    services = listed if fmt == "json" else listed["service"]
    codes = [s["service_code"] for s in services]
    assert "sewer_blockage" in codes and "noise_commercial" in codes
    definition = await api.get(f"{V2}/services/sewer_blockage.{fmt}")
    assert definition.status_code == 200
    valid(definition, "service_definition")
    scoped = await api.get(f"{V2}/services.{fmt}", params={"jurisdiction_id": "QH"})
    assert scoped.status_code == 200


async def _post(api: httpx.AsyncClient, fmt: str, headers: dict[str, str] | None = None,
                **fields: Any) -> httpx.Response:
    return await api.post(f"{V2}/requests.{fmt}", content=httpx.QueryParams(fields).__str__(),
                          headers={**FORM, **(headers or {})})


def _citizen() -> dict[str, str]:
    n = uuid.uuid4().int % 10**8
    return {"phone": f"139{n:08d}", "first_name": "芳", "last_name": "王"}


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_a_point_is_filed_as_a_case_in_its_grid(api: httpx.AsyncClient, fmt: str) -> None:
    lon, lat = grid_centre("G-QH-03-02-2")
    lat += 0.001 if fmt == "xml" else 0  # another address: not a repeat of the JSON one (并单)
    created = await _post(api, fmt, api_key=KEY, service_code="sewer_blockage", lat=lat,
                          long=lon, description="松林路下水道堵塞，污水漫到路面",
                          media_url="https://files.example.gov.cn/p.jpg", **_citizen())
    assert created.status_code == 201, created.text
    body = valid(created, "created_requests")
    case_id = (body[0] if fmt == "json" else body["request"][0])["service_request_id"]

    async def routed() -> bool:  # the read model has the case and its department
        r = await api.get(f"{V2}/requests/{case_id}.json")
        return r.status_code == 200 and r.json()[0]["agency_responsible"] is not None

    await eventually(routed, within=30)
    one = valid(await api.get(f"{V2}/requests/{case_id}.{fmt}"), "requests")
    request = one[0] if fmt == "json" else one["request"][0]
    assert request["status"] == "open" and request["service_code"] == "sewer_blockage"
    # published to three decimals (~100 m): the point a citizen sends is often their home
    assert float(request["lat"]) == round(lat, 3) and float(request["long"]) == round(lon, 3)
    assert request["agency_responsible"].startswith("县水务局")
    assert not request.get("description")  # never published
    staff = (await api.get(f"/api/v1/complaints/{case_id}", headers=SUPERVISOR)).json()
    assert staff["grid_id"] == "G-QH-03-02-2" and staff["channel"] == "app"

    listed = valid(await api.get(f"{V2}/requests.{fmt}", params={
        "service_code": "sewer_blockage,water_outage", "status": "open"}), "requests")
    ids = [r["service_request_id"] for r in (listed if fmt == "json" else listed["request"])]
    assert case_id in ids
    closed_only = (await api.get(f"{V2}/requests.json", params={"status": "closed"})).json()
    assert case_id not in [r["service_request_id"] for r in closed_only]
    by_id = (await api.get(f"{V2}/requests.json", params={
        "service_request_id": f"{case_id},JS20000101-000000", "status": "closed"})).json()
    assert [r["service_request_id"] for r in by_id] == [case_id]  # ids override the rest


@pytest.mark.parametrize(
    ("place", "grid"),
    [
        ({"address_id": "G-QH-01-02-2"}, "G-QH-01-02-2"),
        ({"address_string": "西山乡松林村松林路8号"}, "G-QH-03-02-1"),  # the community's 1st grid
        ({"address_string": "城关街道幸福社区第2网格 幸福路3号"}, "G-QH-01-01-2"),
    ],
)
async def test_an_address_is_placed_in_a_grid_and_published_as_it(
    api: httpx.AsyncClient, pool: asyncpg.Pool, place: dict[str, str], grid: str
) -> None:
    created = await _post(api, "json", api_key=KEY, service_code="garbage",
                          description="垃圾三天没人清运", **place, **_citizen())
    assert created.status_code == 201, created.text
    case_id = created.json()[0]["service_request_id"]
    staff = (await api.get(f"/api/v1/complaints/{case_id}", headers=SUPERVISOR)).json()
    assert staff["grid_id"] == grid
    # published: the grid's name, never the address given (松林路8号 is someone's door)
    name = await pool.fetchval("SELECT name FROM areas WHERE id = $1", grid)

    async def published() -> Any:
        r = await api.get(f"{V2}/requests/{case_id}.json")
        return r.status_code == 200 and r.json()[0]

    request = await eventually(published, within=30)
    assert request["address"] == name
    assert not any(part in request["address"] for part in ("8号", "3号"))


async def test_a_retry_with_the_same_idempotency_key_files_once(api: httpx.AsyncClient) -> None:
    fields = {"api_key": KEY, "service_code": "street_light", "address_id": "G-QH-02-01-1",
              "description": "路灯不亮", **_citizen()}
    key = {"Idempotency-Key": f"o311-{uuid.uuid4().hex}"}
    first = await _post(api, "json", key, **fields)
    again = await _post(api, "json", key, **fields)
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert first.json()[0]["service_request_id"] == again.json()[0]["service_request_id"]


async def test_a_retry_keeps_the_location_the_first_attempt_did_not(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The first attempt filed the case and died before keeping its point (as if the
    process stopped between the two): the retry with the same key keeps it, once."""
    lon, lat = grid_centre("G-QH-02-01-1")
    fields = {"api_key": KEY, "service_code": "street_light", "lat": str(lat), "long": str(lon),
              "description": "路灯不亮", **_citizen()}
    key = {"Idempotency-Key": f"o311-{uuid.uuid4().hex}"}
    first = await _post(api, "json", key, **fields)
    assert first.status_code == 201, first.text
    case_id = first.json()[0]["service_request_id"]
    await pool.execute("DELETE FROM open311_requests WHERE case_id = $1", case_id)
    for _ in range(2):
        again = await _post(api, "json", key, **fields)
        assert again.status_code == 200, again.text
    rows = await pool.fetch("SELECT lat, long FROM open311_requests WHERE case_id = $1", case_id)
    assert [(r["lat"], r["long"]) for r in rows] == [(lat, lon)]


async def test_a_citizen_token_finds_its_request(api: httpx.AsyncClient) -> None:
    case = await register(api)
    for fmt in ("json", "xml"):
        found = await api.get(f"{V2}/tokens/{case['citizen_token']}.{fmt}")
        assert found.status_code == 200, found.text
        body = valid(found, "tokens")
        item = body[0] if fmt == "json" else body["request"][0]
        assert item["service_request_id"] == case["case_id"]


BAD_POSTS: list[tuple[dict[str, Any], int, str]] = [
    ({"service_code": "garbage", "address_id": "G-QH-01-01-1"}, 403, "api_key"),
    ({"api_key": "wrong", "service_code": "garbage", "address_id": "G-QH-01-01-1"}, 403,
     "api_key"),
    ({"api_key": department("water")["Authorization"][7:], "service_code": "garbage",
      "address_id": "G-QH-01-01-1"}, 403, "api_key"),  # a department may not register
    ({"api_key": KEY, "service_code": "no_such_service", "address_id": "G-QH-01-01-1"}, 404,
     "service_code"),
    ({"api_key": KEY, "address_id": "G-QH-01-01-1"}, 400, "service_code"),
    ({"api_key": KEY, "service_code": "garbage", "lat": 39.9, "long": 116.4}, 400,
     "outside every grid"),  # Beijing: not in the county
    ({"api_key": KEY, "service_code": "garbage", "lat": 37.01}, 400, "lat and long"),
    ({"api_key": KEY, "service_code": "garbage", "lat": "north", "long": 1}, 400, "number"),
    ({"api_key": KEY, "service_code": "garbage"}, 400, "lat and long, address_string"),
    ({"api_key": KEY, "service_code": "garbage", "address_string": "火星基地"}, 400,
     "address_string"),
    ({"api_key": KEY, "service_code": "garbage", "address_id": "G-QH-01-01-1",
      "phone": "not a phone"}, 400, "phone"),
    # several e-mail addresses: the outbox sends to none of them; refused as input
    ({"api_key": KEY, "service_code": "garbage", "address_id": "G-QH-01-01-1",
      "email": "wang,li@163.com"}, 400, "email: Value error, one e-mail address only"),
    ({"api_key": KEY, "service_code": "garbage", "address_id": "G-QH-01-01-1",
      "email": "wang;li@163.com"}, 400, "email: Value error, one e-mail address only"),
    ({"api_key": KEY, "service_code": "garbage", "address_id": "G-QH-01-01-1",
      "jurisdiction_id": "sfgov.org"}, 404, "jurisdiction_id"),
]


# The spec's example of POST Service Request (wiki.open311.org/GeoReport_v2, "Sample
# Request"), with this installation's jurisdiction, a service code and a point in one of its
# grids. Contact is optional in GeoReport v2: the example less its phone (an e-mail address
# stays), and less every contact field.
SPEC_POST = {
    "jurisdiction_id": "QH", "service_code": "road_damage", "address_string": "1234 5th street",
    "email": "smit222@sfgov.edu", "device_id": "tt222111", "account_id": "123456",
    "first_name": "john", "last_name": "smith",
    "description": "A large sinkhole is destroying the street",
    "media_url": "http://example.com/image.jpg",
}  # fmt: skip
NO_CONTACT = ("email", "first_name", "last_name", "device_id", "account_id")


async def _citizen_of(api: httpx.AsyncClient, pool: asyncpg.Pool, case_id: str) -> dict:
    async def shown() -> dict | None:
        r = await api.get(f"/api/v1/cases/{case_id}/content", headers=SUPERVISOR)
        return r.json() if r.status_code == 200 else None

    content = await eventually(shown, within=30)
    sms = await pool.fetchval("SELECT count(*) FROM notifications WHERE case_id = $1"
                              " AND channel = 'sms'", case_id)  # fmt: skip
    # the intake notice with the citizen's link, by e-mail (jiesu.intake.follow_up.enqueue)
    mail = await pool.fetchval(
        "SELECT count(*) FROM notifications WHERE case_id = $1 AND recipient_kind = 'citizen'"
        " AND channel = 'email' AND event_kind = 'received'", case_id)  # fmt: skip
    return {k: content[k] for k in ("citizen_name", "citizen_phone", "citizen_email")} | {
        "sms": sms, "mail": mail}


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_the_specs_example_is_filed_without_a_phone(
    api: httpx.AsyncClient, pool: asyncpg.Pool, fmt: str
) -> None:
    """Only the e-mail address: the case records it (and the names); no SMS is sent, and the
    intake notice with the citizen's link goes to that address by e-mail (as for any report
    filed under an API key: jiesu.intake.filing._follow_up_contact) — docs/open311.md said
    no mail was sent."""
    lon, lat = grid_centre("G-QH-01-01-1")
    fields = SPEC_POST | {"lat": lat + (0.001 if fmt == "xml" else 0), "long": lon,
                          "email": f"smit{uuid.uuid4().hex[:6]}@sfgov.edu",
                          "address_string": f"{uuid.uuid4().hex[:8]} 5th street"}  # fmt: skip
    created = await _post(api, fmt, api_key=KEY, **fields)
    assert created.status_code == 201, created.text
    body = valid(created, "created_requests")
    case_id = (body[0] if fmt == "json" else body["request"][0])["service_request_id"]
    assert await _citizen_of(api, pool, case_id) == {
        "citizen_name": "john smith", "citizen_phone": None, "citizen_email": fields["email"],
        "sms": 0, "mail": 1}


async def test_a_request_without_any_contact_is_filed_and_not_merged_by_its_emptiness(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """No phone, no e-mail, no name: the case records the citizen as 'Open311 诉求人' without
    contact (followed through service_request_id only); two such reports of one category in
    one grid at different places are two problems, not a repeat of one citizen's."""
    lon, lat = grid_centre("G-QH-01-02-1")
    cases = []
    for shift in (0.0, 0.0005):
        fields = {k: v for k, v in SPEC_POST.items() if k not in NO_CONTACT} | {
            "lat": lat + shift, "long": lon,
            "address_string": f"{uuid.uuid4().hex[:8]} 5th street"}  # another place
        created = await _post(api, "json", api_key=KEY, **fields)
        assert created.status_code == 201, created.text
        cases.append(created.json()[0]["service_request_id"])
    assert cases[0] != cases[1]
    assert await _citizen_of(api, pool, cases[0]) == {
        "citizen_name": "Open311 诉求人", "citizen_phone": None, "citizen_email": None, "sms": 0,
        "mail": 0}


@pytest.mark.parametrize(("fields", "status", "says"), BAD_POSTS)
@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_a_refused_request_is_a_spec_error_and_files_nothing(
    api: httpx.AsyncClient, pool: asyncpg.Pool, fmt: str, fields: dict[str, Any], status: int,
    says: str,
) -> None:
    before = await pool.fetchval("SELECT (SELECT count(*) FROM intakes)"
                                 " + (SELECT count(*) FROM open311_requests)")
    refused = await _post(api, fmt, **({"phone": "13900000000"} | fields))
    assert refused.status_code == status, refused.text
    body = valid(refused, "errors")
    error = body[0] if fmt == "json" else body["error"][0]
    assert error["code"] == status and says in error["description"], error
    after = await pool.fetchval("SELECT (SELECT count(*) FROM intakes)"
                                " + (SELECT count(*) FROM open311_requests)")
    assert after == before


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/services.yaml", 400),
        ("/services/no_such_service.json", 404),
        ("/requests/JS20000101-000000.json", 404),
        ("/tokens/not-a-token.xml", 404),
        ("/requests.json?status=pending", 400),
        ("/requests.json?start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z", 400),
        ("/requests.json?start_date=yesterday", 400),
        ("/no/such/resource.json", 404),
        ("/requests.xml?jurisdiction_id=sfgov.org", 404),
        # each code is compared with every case of the window: at most 100 different ones
        ("/requests.json?service_code=" + ",".join(f"c{i}" for i in range(101)), 400),
    ],
)
async def test_bad_reads_are_spec_errors(api: httpx.AsyncClient, path: str, status: int) -> None:
    response = await api.get(f"{V2}{path}")
    assert response.status_code == status, response.text
    fmt = "xml" if ".xml" in path else "json"
    if fmt == "json" and not path.split("?")[0].endswith(".json"):
        assert response.headers["content-type"].startswith("text/xml")  # no format: XML
        XSD.validate(response.text)
        return
    body = response.json() if fmt == "json" else XSD.to_dict(response.text)["error"]
    assert body[0]["code"] == status


async def test_repeated_service_codes_count_once(api: httpx.AsyncClient) -> None:
    codes = ",".join(["sewer_blockage"] * 500 + [f"c{i}" for i in range(99)])
    response = await api.get(f"{V2}/requests.json", params={"service_code": codes})
    assert response.status_code == 200, response.text
    assert all(r["service_code"] == "sewer_blockage" for r in response.json())


async def test_a_body_that_is_not_a_form_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.post(f"{V2}/requests.json", json={"api_key": KEY},
                              headers=OPERATOR)
    assert response.status_code == 400, response.text
    valid(response, "errors")


async def test_guessing_keys_or_tokens_is_limited(
    client: Client, pool: asyncpg.Pool, settings: Settings
) -> None:
    """The API's failed-authentication limit covers Open311's api_key and tokens: after the
    limit a guesser gets 429 with Retry-After, even with a right key."""
    strict = settings.model_copy(update={"auth_failure_limit": 3})
    async with served(create_app(strict, client=client, pool=pool)) as own:
        for n in range(3):
            wrong = await (own.get(f"{V2}/tokens/guess{n}.json") if n % 2 else _post(
                own, "json", api_key=f"guess{n}", service_code="garbage"))
            assert wrong.status_code in (403, 404), wrong.text
        blocked = await _post(own, "xml", api_key=KEY, service_code="garbage",
                              address_id="G-QH-01-01-1", **_citizen())
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
        valid(blocked, "errors")


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_the_report_s_media_is_not_published(api: httpx.AsyncClient, fmt: str) -> None:
    """``media_url`` is the report's photo — its content, as the description is (quoted in
    it, masked where the description is, jiesu.access.content): GET requests, which needs no
    key, publishes neither."""
    photo = f"https://files.example.gov.cn/{uuid.uuid4().hex}.jpg"
    lon, lat = grid_centre("G-QH-03-02-2")
    lat += 0.002 if fmt == "json" else 0.003  # a place of its own: not a repeat (并单)
    created = await _post(api, fmt, api_key=KEY, service_code="sewer_blockage", lat=lat,
                          long=lon, description="下水道堵塞，照片见附件", media_url=photo,
                          **_citizen())  # fmt: skip
    assert created.status_code == 201, created.text
    body = valid(created, "created_requests")
    case_id = (body[0] if fmt == "json" else body["request"][0])["service_request_id"]

    async def published() -> httpx.Response | None:
        r = await api.get(f"{V2}/requests/{case_id}.{fmt}")
        return r if r.status_code == 200 else None

    one = await eventually(published, within=30)
    valid(one, "requests")
    assert photo not in one.text
    listed = await api.get(f"{V2}/requests.{fmt}", params={"service_request_id": case_id})
    assert listed.status_code == 200 and case_id in listed.text and photo not in listed.text
    staff = (await api.get(f"/api/v1/cases/{case_id}/content", headers=SUPERVISOR)).json()
    assert photo in staff["description"]  # kept, for the staff who see the content


async def test_the_service_notice_is_in_chinese_only(api: httpx.AsyncClient) -> None:
    """GeoReport v2's ``service_notice`` is free text for the people who read the answer
    ("information about the action expected to fulfill the request"), not a code: like every
    text the product gives citizens and integrators it is Chinese only. It was 「已受理
    (registered)」 and 「已并入同一问题的在办工单 (merged into the open case of the same
    problem)」. Which of the two happened, a program reads from the status: 201 or 200."""
    fields = {"api_key": KEY, "service_code": "street_light", "address_id": "G-QH-02-02-1",
              "description": "路灯不亮，整条街都黑", **_citizen()}
    first = await _post(api, "json", **fields)
    assert first.status_code == 201, first.text
    assert first.json()[0]["service_notice"] == "已受理"
    case_id = first.json()[0]["service_request_id"]

    async def merged() -> httpx.Response | None:  # once the read model has the open case
        again = await _post(api, "json", **fields)
        return again if again.status_code == 200 else None

    again = await eventually(merged, within=30)
    assert again.json()[0]["service_request_id"] == case_id
    assert again.json()[0]["service_notice"] == "已并入同一问题的在办工单"
