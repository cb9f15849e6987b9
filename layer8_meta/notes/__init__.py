"""The notes graph: one markdown note per concept in ``notes/``, linked to its prerequisites
(``[[wikilinks]]``) and to the code that implements it (``code:``); :mod:`.parse` reads them,
:mod:`.graph` builds, checks and renders the graph, :mod:`.cli` is ``python -m layer8_meta
notes``."""
