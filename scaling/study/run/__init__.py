"""Running a study: preparation stages, submitting runs through submitit, their states, the launch
and status CLIs."""
