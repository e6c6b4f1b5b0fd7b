"""Stored queries of the XDS Document Registry: ITI-18 Registry Stored Query and ITI-51 Multi-Patient Query.

* :mod:`.definitions` -- the 16 queries as data (parameters, required ones, xor pairs, defaults);
* :mod:`.params` -- AdhocQueryRequest -> typed parameters, with the IHE error codes for wrong ones;
* :mod:`.engine` -- the SQL (SQLAlchemy Core on :mod:`ihe_engine.xds.registry.tables`) and the answer;
* :mod:`.soap` -- the SOAP operations, the AdhocQueryResponse and the audit record.
"""

from .definitions import QUERY_DEFINITIONS, Kind, ParamSpec, QueryDefinition, definition_for
from .engine import DEFAULT_MAX_RESULTS, QueryResult, patient_keys, run_stored_query
from .params import StoredQueryRequest, bind_parameters, parse_adhoc_query_request
from .soap import QuerySettings, adhoc_query_response, query_operations

__all__ = [
    "QUERY_DEFINITIONS", "Kind", "ParamSpec", "QueryDefinition", "definition_for",
    "DEFAULT_MAX_RESULTS", "QueryResult", "patient_keys", "run_stored_query",
    "StoredQueryRequest", "bind_parameters", "parse_adhoc_query_request",
    "QuerySettings", "adhoc_query_response", "query_operations",
]
