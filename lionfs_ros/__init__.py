"""lionfs_ros: the LION-FS fast & slow online video assistant as a ROS 2 package.

The rosidl interface build installs a second ``lionfs_ros`` directory (``msg``, ``srv``,
``action`` and the type-support libraries) into the Python prefix. Extending ``__path__``
lets ``lionfs_ros.msg`` and ``lionfs_ros.cli`` import side by side, whichever directory
Python found first.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
