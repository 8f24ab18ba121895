# Class text of the CPU demo: per class, the 80 CLIP prompts followed by our
# short descriptions (configs/vlltr/demo_text, the authors' layout), which
# mix visual sentences with deliberately uninformative ones for AnSS.
demo_model = 'vlltr-demo-effnetlite0-minilm'
corpus = dict(
    type='ClassTextCorpus',
    labels_file='configs/vlltr/demo_text/labels.txt',
    wiki_dir='configs/vlltr/demo_text/wiki',
    templates='openai_imagenet',
    # MiniLM's WordPiece tokenizer; no demo sentence exceeds 32 tokens.
    tokenizer=demo_model,
    context_length=32,
    cache_dir='data/cache/class_text')
