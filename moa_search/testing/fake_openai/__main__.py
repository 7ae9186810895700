from moa_search.testing.fake_openai.cli import main

raise SystemExit(main())
