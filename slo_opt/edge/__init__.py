"""Edge-cloud serving: several engines on a network, and who serves each request.

* :mod:`.cluster`: sites, links and routes on a networkx topology; power models.
* :mod:`.simulation`: the multi-site co-simulation (one online engine simulation per site).
* :mod:`.dispatchers`: site-choice policies (PerLLM's CS-UCB and baselines), one per file.
"""
