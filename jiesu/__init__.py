"""Jiesu (接诉即办): the shared domain package imported by workflows, activities and the API."""
