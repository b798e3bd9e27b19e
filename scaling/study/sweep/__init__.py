"""The sweep language: the sweep file's sections, loading and checking it, the grid expanded to runs
and their estimates."""
