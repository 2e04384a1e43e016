"""Wire schemas of the Mistral API (and the OpenAI spellings it tolerates). No behaviour."""
