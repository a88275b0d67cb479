"""Reports: the numbers each report shows, how they are displayed, and how a set is rendered.

Owns, from data to published file:

- :mod:`.data` - quarters, :func:`load_report_data` (the store, cached per kernel), cohorts and
  the small-cell threshold every report shares;
- :mod:`.quarterly`, :mod:`.therapist`, :mod:`.comparative` - the sections of each report
  (DataFrame in, suppressed DataFrame out);
- :mod:`.glance` - the "This quarter at a glance" box: headline figures against last quarter,
  changes judged against chance, items needing action;
- :mod:`.display` - turning section frames into what a reader sees (HTML tables, notes, charts);
- :mod:`.render` - executing notebooks in warm kernels and exporting inert, self-contained HTML;
- :mod:`.publish` - planning report jobs and publishing a set atomically (:func:`render_reports`);
- ``notebooks/`` - the three papermill notebooks, shipped as package data.

May import everything below it (``store``, ``episodes``, ``models``, ``tables``, ``plots``,
``privacy``, ``instruments``, ``schema``, ``errors``); nothing but ``cli`` imports it. The
notebooks call the public names below as ``rp.<name>`` (``from outcomes import reports as rp``).
"""

from __future__ import annotations

from outcomes.reports.comparative import *  # noqa: F403
from outcomes.reports.comparative import __all__ as _comparative
from outcomes.reports.data import *  # noqa: F403
from outcomes.reports.data import __all__ as _data
from outcomes.reports.display import *  # noqa: F403
from outcomes.reports.display import __all__ as _display
from outcomes.reports.glance import *  # noqa: F403
from outcomes.reports.glance import __all__ as _glance
from outcomes.reports.publish import *  # noqa: F403
from outcomes.reports.publish import __all__ as _publish
from outcomes.reports.quarterly import *  # noqa: F403
from outcomes.reports.quarterly import __all__ as _quarterly
from outcomes.reports.therapist import *  # noqa: F403
from outcomes.reports.therapist import __all__ as _therapist

__all__ = [*_data, *_quarterly, *_therapist, *_glance, *_comparative, *_display, *_publish]
