"""Resolves the data layout before the executor runs, for caching.

TFX's FileBasedDriver fingerprints the files its split patterns match. Our
layout (spans, windows, a test split from another span) is resolved by
imagedata.data_layout, so the driver fingerprints exactly the files that
resolution picks: new or changed data misses the cache, unchanged data hits
it. Only LocalDagRunner runs drivers; on Kubeflow the executor resolves the
same layout itself.
"""
from typing import Any, Dict

from tfx.components.example_gen import driver, utils

from imgcls.components.image_example_gen import options as options_lib


class Driver(driver.FileBasedDriver):

  def resolve_exec_properties(self, exec_properties: Dict[str, Any],
                              pipeline_info, component_info) -> Dict[str, Any]:
    del pipeline_info, component_info
    _, plan = options_lib.resolve_layout(exec_properties)
    exec_properties[utils.SPAN_PROPERTY_NAME] = plan.span
    exec_properties[utils.VERSION_PROPERTY_NAME] = None
    exec_properties[utils.FINGERPRINT_PROPERTY_NAME] = plan.fingerprint()
    return exec_properties
