"""The web console (控制台): server-rendered pages for operators, departments, supervisors,
auditors and citizens, served by the API process (docs/console.md)."""
