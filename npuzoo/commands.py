"""The atc and ais_bench command lines, defined once: mk/pipeline.mk runs them (as Make functions)
and each model README shows them. Arguments are strings, so that a Make placeholder or a shell
variable such as ${bs} fits anywhere."""

import shlex

from npuzoo.config import ModelSpec


def atc_args(spec: ModelSpec, model: str, output: str, batch: str, soc: str,
             aipp: str | None = None) -> list[str]:
    """The guides' `atc` arguments, then the AIPP file's, then model.yaml's atc.extra_args."""
    channels, height, width = spec.input.shape
    args = ["--framework=5", f"--model={model}", f"--output={output}",
            f"--input_format={spec.input.layout}",
            f'--input_shape="{spec.input.name}:{batch},{channels},{height},{width}"',
            "--log=error", f"--soc_version={soc}"]
    return args + (aipp_args(aipp) if aipp else []) + [shlex.quote(a) for a in spec.atc_extra_args]


def aipp_args(config_file: str) -> list[str]:
    return [f"--insert_op_conf={config_file}", "--enable_small_channel=1"]


def infer_args(model: str, inputs: str, output: str, dirname: str, batch: object,
               device: object = None) -> list[str]:
    """ais_bench over a folder of preprocessed files, one TXT result per input file."""
    args = ["--model", model, "--input", inputs, "--output", output, "--output_dirname", dirname,
            "--outfmt", "TXT", "--batchsize", batch]
    return [str(a) for a in args + (["--device", device] if device is not None else [])]


def perf_args(model: str, output: str, dirname: str, batch: object, loop: object,
              warmup: object, device: object = None) -> list[str]:
    """ais_bench pure inference: `loop` timed runs after `warmup` untimed ones."""
    args = ["--model", model, "--output", output, "--output_dirname", dirname, "--outfmt", "BIN",
            "--batchsize", batch, "--loop", loop, "--warmup_count", warmup]
    return [str(a) for a in args + (["--device", device] if device is not None else [])]


def make_functions(spec: ModelSpec) -> dict[str, str]:
    """The Make functions ATC_ARGS ($(5): an optional AIPP file), INFER_ARGS and PERF_ARGS."""
    atc = atc_args(spec, "$(1)", "$(2)", "$(3)", "$(4)")
    extras = atc[7:]  # model.yaml's, shell-quoted; a `$` doubled, so that Make leaves it be
    text = " ".join(atc[:7]) + "$(if $(5), " + " ".join(aipp_args("$(5)")) + ")"
    return {
        "ATC_ARGS": text + "".join(" " + e.replace("$", "$$") for e in extras),
        "INFER_ARGS": " ".join(infer_args("$(1)", "$(2)", "$(3)", "$(4)", "$(5)", "$(6)")),
        "PERF_ARGS": " ".join(perf_args("$(1)", "$(2)", "$(3)", "$(4)", "$(5)", "$(6)", "$(7)")),
    }
