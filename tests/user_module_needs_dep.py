"""A user's module whose own import fails: it needs a package that is not installed (a test
fixture for tests/test_user_model.py)."""

import not_installed_dependency_of_a_user_module  # noqa: F401
