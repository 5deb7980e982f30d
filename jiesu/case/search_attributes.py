"""Custom search attributes: make cases findable in Temporal's visibility and Web UI."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import SearchAttributeKey

CASE_STATUS = SearchAttributeKey.for_keyword("CaseStatus")
CASE_DEPARTMENT = SearchAttributeKey.for_keyword("CaseDepartment")
CASE_URGENCY = SearchAttributeKey.for_keyword("CaseUrgency")
CASE_CATEGORY = SearchAttributeKey.for_keyword("CaseCategory")
CASE_CHANNEL = SearchAttributeKey.for_keyword("CaseChannel")
CASE_ACCEPT_DEADLINE = SearchAttributeKey.for_datetime("CaseAcceptDeadline")
CASE_CONTACT_DEADLINE = SearchAttributeKey.for_datetime("CaseContactDeadline")
CASE_FINISH_DEADLINE = SearchAttributeKey.for_datetime("CaseFinishDeadline")
CASE_BREACHES = SearchAttributeKey.for_keyword_list("CaseBreaches")
CASE_ESCALATION_LEVEL = SearchAttributeKey.for_int("CaseEscalationLevel")

ALL = (
    CASE_STATUS,
    CASE_DEPARTMENT,
    CASE_URGENCY,
    CASE_CATEGORY,
    CASE_CHANNEL,
    CASE_ACCEPT_DEADLINE,
    CASE_CONTACT_DEADLINE,
    CASE_FINISH_DEADLINE,
    CASE_BREACHES,
    CASE_ESCALATION_LEVEL,
)


async def register(client: Client) -> list[str]:
    """Register the attributes that the namespace does not have yet; return their names."""
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )

    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace), retry=True
    )
    missing = {k.name: k for k in ALL if k.name not in existing.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={n: k.indexed_value_type for n, k in missing.items()},
            ),
            retry=True,
        )
    return sorted(missing)
