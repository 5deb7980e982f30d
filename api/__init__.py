"""FastAPI application: intake, case views and the human actions on a case."""
