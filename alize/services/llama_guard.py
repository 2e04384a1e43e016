"""Llama Guard's answer format, read into Mistral's moderation categories. A Llama Guard
model (its GGUF's own chat template builds its safety prompt around the conversation)
answers `safe`, or `unsafe` and a line of hazard codes (`S1,S10`); a grammar holds it to
that. Its 14 hazards (Llama Guard 3) map onto Mistral's nine categories; S5 (defamation),
S8 (intellectual property) and S13 (elections) have no counterpart and flag nothing."""

GRAMMAR = 'root ::= "safe" | "unsafe\\n" code ("," code){0,4}\ncode ::= "S" [1-9] [0-9]?\n'
MAX_TOKENS = 40  # the longest answer the grammar allows is about 20 tokens

HAZARDS = {
    "S1": ("violence_and_threats", "dangerous_and_criminal_content"),  # violent crimes
    "S2": ("dangerous_and_criminal_content",),  # non-violent crimes
    "S3": ("sexual", "dangerous_and_criminal_content"),  # sex-related crimes
    "S4": ("sexual", "dangerous_and_criminal_content"),  # child sexual exploitation
    "S5": (),  # defamation
    "S6": ("health", "financial", "law"),  # specialized advice
    "S7": ("pii",),  # privacy
    "S8": (),  # intellectual property
    "S9": ("dangerous_and_criminal_content",),  # indiscriminate weapons
    "S10": ("hate_and_discrimination",),  # hate
    "S11": ("selfharm",),  # suicide and self-harm
    "S12": ("sexual",),  # sexual content
    "S13": (),  # elections
    "S14": ("dangerous_and_criminal_content",),  # code interpreter abuse
}


def read(answer: str) -> set[str]:
    """The Mistral categories an answer flags (none for `safe`, or for an answer cut short)."""
    lines = answer.strip().splitlines()
    if len(lines) < 2 or lines[0].strip() != "unsafe":
        return set()
    return {category for code in lines[1].split(",") for category in HAZARDS.get(code.strip(), ())}
