"""``timewait explain``: a real capture in, what happened to its connections out."""
