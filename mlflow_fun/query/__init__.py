"""Query: the best run and other questions, from any source, one engine per kind."""
