"""The operator console under ``/ui/`` (DESIGN §12): server-rendered pages over the runtime.

``app`` mounts the routes and guards them (session cookie, CSRF), ``session`` signs the
cookie and the CSRF tokens, ``auth`` checks a login, ``views`` reads what the pages show,
``pages`` and ``actions`` are the GET and POST handlers; templates and the stylesheet are
package data.
"""

from notifier.console.app import is_console
from notifier.console.routes import mount

__all__ = ["is_console", "mount"]
