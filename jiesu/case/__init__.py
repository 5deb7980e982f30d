"""The case (工单): vocabulary (statuses, roles, actions, events, state), lifecycle checks, SLA
policy, the working-day calendar and the search attributes a case is found by.

Pure and shared by the API, the workflows and the activities. Imports nothing of ours but
itself: every other package stands on it.
"""
