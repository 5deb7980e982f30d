"""Activities: everything in a case's life that touches the outside world."""
