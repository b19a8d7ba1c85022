from tests.integrations.conftest import broke_account  # noqa: F401 (a team without balance)
