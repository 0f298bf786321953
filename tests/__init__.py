"""The test suite. Its shared helpers live in :mod:`tests.helpers`."""

import pytest

# Rewrite the helpers' asserts as pytest rewrites a test's, so that a failing check in a
# helper reports its values too. This must run before anything imports them.
pytest.register_assert_rewrite("tests.helpers")
