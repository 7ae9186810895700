from moa_search.testing.fake_openai.server import main

raise SystemExit(main())
