"""The XDS Document Registry.

* :mod:`.tables` -- the registry tables (read by the stored queries; their contract is in its docstring);
* :mod:`.store` -- :class:`RegistryStore`, the repository over them (no business rules);
* :mod:`.actor` -- :class:`DocumentRegistry` and :class:`RegistrySettings`: ITI-42 and its rules;
* :mod:`.soap` -- ``registry_operations`` for the ``/xds/registry`` endpoint and ``register_in_process`` for
  the embedded repository.

Only the tables are imported here, so ``storage.all_models`` can load them without pulling in the actor.
"""

from .tables import ObjectKind

__all__ = ["ObjectKind"]
