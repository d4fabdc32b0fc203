"""A user module whose import fails (tests/test_user_model.py)."""

raise ImportError("libfoo.so: cannot open shared object file")
