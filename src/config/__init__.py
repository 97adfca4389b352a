"""A run's config: composing ``conf/main.yaml``, the options each group offers, the resolvers
``conf/`` uses and the checks of a composed config's values.

- ``compose`` / ``available`` / ``check_command_line``: ``hydrarl.config.compose``
- ``validate``, ``wrapper_only``: ``hydrarl.config.validate``
- ``override_key``, ``merge_overrides``: ``hydrarl.config.overrides``
- resolvers ``${project_root:}``, ``${mlflow_store:}``, ``${recurrent_policy:...}``: ``hydrarl.config.resolvers``
  (registered on import of this package)
"""

from hydrarl.config import resolvers  # noqa: F401  (registers the resolvers)
from hydrarl.config.overrides import merge_overrides, override_key
from hydrarl.config.validate import validate, wrapper_only

__all__ = ["merge_overrides", "override_key", "validate", "wrapper_only"]
