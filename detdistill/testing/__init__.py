"""Helpers the tests and the benchmarks in bench/ share, imported from here rather than from each
other's folders: ImageNette-shaped image folders (`fake_data`), Stable-Diffusion-shaped random-weight
pipelines (`sd_shapes`), a runner for the workflow's copy and its job tables (`workflow_run`), the
machine's description (`machine`), and the measurements of bench/'s scripts (`rehearsal`, `memory`,
`kill_resume`, `engine`). The workflow itself uses none of it. Functions that read the workflow's
files (configs, class tables) take the checkout's path: the package reads nothing beside itself."""
