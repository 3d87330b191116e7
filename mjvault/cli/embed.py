"""``mjvault embed``: image vectors from an ONNX model the user supplies (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import click

from mjvault.cli.context import AppContext, json_option, pass_app


@click.command(
    "embed",
    epilog="""\b
Examples:
  mjvault embed --model clip-visual.onnx --text-model clip-text.onnx --tokenizer tokenizer.json
  mjvault embed                       (again, with the models remembered: new images only)
  mjvault search --semantic "a lighthouse in a storm"
""",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The image model (ONNX). Remembered in the vault's config.toml.",
)
@click.option(
    "--text-model",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Its text model (ONNX), for `search --semantic`. Remembered too.",
)
@click.option(
    "--tokenizer",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The text model's tokenizer.json (default: the one beside it). Checked against "
    "the text model; a new --text-model without it forgets the old one.",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=8, max=4096),
    default=None,
    help="Input size in pixels when the graph leaves it open (default 224, CLIP's). "
    "Kept with the vectors: later runs and queries use it.",
)
@click.option(
    "--mean", default=None, help="R,G,B mean when the model does not say (CLIP's). Kept too."
)
@click.option(
    "--std", default=None, help="R,G,B std when the model does not say (CLIP's). Kept too."
)
@json_option
@pass_app
def embed_command(
    app: AppContext,
    model_path: Path | None,
    text_model: Path | None,
    tokenizer: Path | None,
    image_size: int | None,
    mean: str | None,
    std: str | None,
) -> None:
    """Compute image embeddings with an ONNX model you supply, for `search --semantic`.

    Each image of HEAD is run through the model once; the vectors are kept in the vault's
    cache (sealed in an encrypted vault) and survive index rebuilds. Interrupted, it keeps
    what it computed: run it again to go on. Needs the `embed` extra (onnxruntime,
    tokenizers): pip install 'mjvault[embed]'.
    """
    from mjvault.config import Layer
    from mjvault.config.loader import vault_config_path
    from mjvault.config.writer import set_value, unset_value
    from mjvault.errors import UsageError
    from mjvault.similarity.embeddings import embed_images, stored_preprocessing
    from mjvault.similarity.onnx_models import ImageModel, TextModel, model_digest, parse_triple

    settings = app.config.embed
    chosen = model_path or settings.model
    if chosen is None:
        raise UsageError("which model? --model PATH.onnx (an image model you supply)")
    vault = app.open_vault()
    # What the options leave out comes from the model's stored vectors (FORMAT §7.4), so a
    # later run prepares images as the first did; options that differ are refused.
    digest = model_digest(Path(chosen))
    stored = stored_preprocessing(vault, digest)
    model = ImageModel.load(
        Path(chosen),
        image_size=image_size or (stored.size if stored else None),
        mean=parse_triple(mean, "--mean") if mean else (stored.mean if stored else None),
        std=parse_triple(std, "--std", positive=True) if std else (stored.std if stored else None),
        digest=digest,
    )
    if tokenizer is not None and text_model is None and settings.text_model is None:
        raise UsageError("--tokenizer goes with a text model: --text-model PATH.onnx")
    if text_model is not None or tokenizer is not None:
        # Refused now, not at the first search: a tokenizer alone is checked against the
        # remembered text model; a new text model without one takes the one beside it.
        pair = TextModel.load(
            text_model or Path(settings.text_model),  # type: ignore[arg-type]
            tokenizer,
        )
        pair.check()
    config = vault_config_path(vault.path)
    # Absolute paths: config.toml reads a relative one from its own folder.
    if model_path is not None:
        set_value(config, "embed.model", model_path.resolve(), layer=Layer.VAULT)
    if text_model is not None:
        set_value(config, "embed.text_model", text_model.resolve(), layer=Layer.VAULT)
        if tokenizer is None:  # the old model's tokenizer is not the new one's
            unset_value(config, "embed.tokenizer", layer=Layer.VAULT)
    if tokenizer is not None:
        set_value(config, "embed.tokenizer", tokenizer.resolve(), layer=Layer.VAULT)
    head = vault.head()
    total = head.stats.get("images") if head else 0
    with app.progress(total, "embeddings", unit="image") as bar:
        seen = 0

        def progress(done: int, _total: int | None) -> None:
            nonlocal seen
            bar.update(done - seen)
            seen = done

        report = embed_images(vault, model, progress=progress)

    def human() -> None:
        click.echo(
            f"embeddings of {model.path.name} ({report.dims} dims): {report.embedded} computed, "
            f"{report.cached} already there"
            + (f", {report.not_images} videos or undecodable" if report.not_images else "")
            + (f", {report.unreadable} images unreadable" if report.unreadable else "")
        )

    app.emit(report.to_json(), human)
