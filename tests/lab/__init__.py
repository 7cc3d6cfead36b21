"""The test lab: network namespaces for scanner tests and benchmarks (see README.md here).

>>> from tests.lab import Lab, lab_available
>>> with Lab() as lab:  # doctest: +SKIP
...     t1 = lab.add_host("t1")
...     t1.serve_tcp([22, 80])
...     lab.call("socket.create_connection", (str(t1.v4), 22), 2).close()
"""

from tests.lab.core import Lab, LabHost, lab_available
from tests.lab.netns import LabError, LabTimeout

__all__ = ["Lab", "LabError", "LabHost", "LabTimeout", "lab_available"]
