# Class text (paper §4.1): per class, the 80 CLIP prompts followed
# by the sentences of its Wikipedia description, in the authors' layout:
#   data/text/imagenet-lt/labels.txt         class names, in label order
#   data/text/imagenet-lt/wiki/desc_{i}.txt  description of class i
# Build it for a new class list with tools/text/build_class_text.py.
text_root = 'data/text/imagenet-lt'
corpus = dict(
    type='ClassTextCorpus',
    labels_file=f'{text_root}/labels.txt',
    wiki_dir=f'{text_root}/wiki',
    templates='openai_imagenet',
    # CLIP BPE (RN50 and ViT-B-16 share it), 75 tokens + SOT/EOT.
    tokenizer='RN50',
    context_length=77,
    cache_dir='data/cache/class_text')
