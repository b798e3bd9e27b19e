"""Laws of a study: the fit CLI, the joint law, comparing two studies, the planner."""
