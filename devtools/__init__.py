"""Development tools: `make run`'s supervisor, `make test`'s run isolation, the embedded Redis."""
