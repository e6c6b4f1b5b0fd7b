from ihe_engine.config import settings_from_args
from ihe_engine.cli import build_parser
from ihe_engine.profiles import transaction_for_action, transactions
from pathlib import Path


def test_transaction_table_is_consistent():
    table = transactions()
    assert table["ITI-41"].mtom and table["ITI-43"].mtom and not table["ITI-42"].mtom
    assert transaction_for_action("urn:ihe:iti:2007:RegistryStoredQuery").id == "ITI-18"
    actions = [t.action for t in table.values() if t.action]
    assert len(actions) == len(set(actions)), "two transactions share a wsa:Action"
    assert all(t.response_action.startswith(t.action.rsplit(":", 1)[0]) for t in table.values() if t.action)
    assert "ADT^A40" in table["ITI-8"].hl7


def test_example_configurations_load():
    for example in Path(__file__).resolve().parent.parent.joinpath("config").glob("*.toml"):
        args = build_parser().parse_args(["serve", "--config", str(example)])
        if "tls" in example.name:
            assert settings_from_args(args).tls_enabled
        else:
            assert settings_from_args(args).workers == 2
