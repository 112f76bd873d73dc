"""``python -m genai_pipeline.cli``: how the local stack starts the model server and the web page."""

from genai_pipeline.cli.parser import main

raise SystemExit(main())
