"""Analysis tools: episode rendering (``ddn.analysis.render``) and result inspection."""
