"""imgcls: image classifiers trained by a TFX pipeline and served by TF Serving.

The one top-level import name. In a checkout, `pipeline/`, `components/` and
`trainer/` stand at the repository's top level, where TFX's templates put
them; the wheel installs them as `imgcls.pipeline`, `imgcls.components` and
`imgcls.trainer` (setup.py's `package_dir`). Adding the checkout to this
package's search path gives them the same names when the code runs from the
source tree, so nothing imports them by a second name.
"""
import os

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_CHECKOUT, 'setup.py')):
  __path__.append(_CHECKOUT)
