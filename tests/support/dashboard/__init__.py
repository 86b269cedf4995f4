"""Support modules of the tests in tests/dashboard/."""
