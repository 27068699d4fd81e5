"""Reading finished runs: the paper table (``report``), rliable's aggregates (``aggregate``), the figures
(``plots``) and the published numbers they are compared with (``published``)."""
