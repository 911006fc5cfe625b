"""`train.export`: CTranslate2 and ONNX exports compute what our model computes.

References are our own model's forward and `generate()` (itself tested against Marian and the paper).
CTranslate2 is checked at three levels: per-token log-probabilities (`score_batch`), beam scores
(its length penalty against transformers'), and decoded token ids and texts, greedy and beam 4 with
`length_penalty_form="hf"`. The models have random weights, with `</s>` nudged so that hypotheses end
at every length (empty, short, long, and at the length limit), not only at the limit.
"""

from __future__ import annotations

import logging
import sys

import pytest
import torch

import hf_vanilla_transformer as hvt
from tests._tiny_tokenizer import SAMPLE_LINES
from tests.helpers import MULTI30K, random_batch, tiny_model
from train.precision import int8_sums_saturate

EOS = 2


@pytest.fixture(scope="module")
def tokenizer():
    return hvt.train_tokenizer(texts=SAMPLE_LINES, vocab_size=300)


def mixed_length_model(vocab_size: int, seed: int = 0, **overrides):
    """A random tiny model (paper defaults: interleaved table, no attention bias) whose `</s>` output
    embedding leans towards the average decoder state, so that outputs of all lengths occur."""
    model = tiny_model(seed=seed, vocab_size=vocab_size, max_position_embeddings=128, **overrides)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        source = torch.randint(4, vocab_size, (64, 8), generator=generator)
        target = torch.randint(4, vocab_size, (64, 8), generator=generator)
        mean_state = model.model(input_ids=source, decoder_input_ids=target).last_hidden_state.mean((0, 1))
        row_norm = model.lm_head.weight.norm(dim=1).mean()
        model.lm_head.weight[EOS] += 0.2 * row_norm * mean_state / mean_state.norm()
    model.generation_config.length_penalty_form = "hf"
    return model


def random_sources(vocab_size: int, count: int, seed: int = 1) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 12, (count,), generator=generator).tolist()
    return [torch.randint(4, vocab_size, (n,), generator=generator).tolist() + [EOS] for n in lengths]


def until_eos(row: list[int]) -> list[int]:
    """Generated ids after the decoder start token, up to (without) `</s>`, without padding."""
    row = row[1:]
    return [t for t in (row[: row.index(EOS)] if EOS in row else row) if t != 0]


# ---- CTranslate2 ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct2(tokenizer, tmp_path_factory):
    pytest.importorskip("ctranslate2", reason="CTranslate2 export needs ctranslate2 (the `export` extra)")
    from train.export import export_ctranslate2

    model = mixed_length_model(len(tokenizer))
    folder = tmp_path_factory.mktemp("ct2")
    fp32 = export_ctranslate2(model, tokenizer, folder / "fp32")
    int8 = export_ctranslate2(model, tokenizer, folder / "int8", quantization="int8")
    return model, fp32, int8


def translator(folder):
    import ctranslate2

    return ctranslate2.Translator(str(folder))


@torch.no_grad()
def test_ctranslate2_log_probs_equal_ours(ct2, tokenizer):
    model, fp32, int8 = ct2
    sources = random_sources(len(tokenizer), 12)
    targets = random_sources(len(tokenizer), 12, seed=2)
    as_tokens = tokenizer.convert_ids_to_tokens
    fp32_scores = translator(fp32).score_batch([as_tokens(s) for s in sources], [as_tokens(t[:-1]) for t in targets])
    int8_scores = translator(int8).score_batch([as_tokens(s) for s in sources], [as_tokens(t[:-1]) for t in targets])
    int8_errors = []
    for source, target, exact, quantized in zip(sources, targets, fp32_scores, int8_scores, strict=True):
        logits = model(input_ids=torch.tensor([source]), decoder_input_ids=torch.tensor([[1] + target[:-1]])).logits
        ours = logits[0].log_softmax(-1)[torch.arange(len(target)), torch.tensor(target)]  # target ends in </s>
        torch.testing.assert_close(torch.tensor(exact.log_probs), ours, rtol=0, atol=1e-4)
        int8_errors.append((torch.tensor(quantized.log_probs) - ours).abs())
    int8_errors = torch.cat(int8_errors)
    assert int8_errors.max() > 0  # int8 weights really are different
    # Without VNNI, int8 products are summed in 16 bits and saturate (`int8_sums_saturate`): these random weights
    # gave a mean error of 0.45 and a maximum of 1.33 on an AVX2-only AMD EPYC, against < 0.05 and < 0.3 with VNNI.
    mean_bound, max_bound = (1.0, 3.0) if int8_sums_saturate() else (0.05, 0.3)
    assert int8_errors.mean() < mean_bound and int8_errors.max() < max_bound, (int8_errors.mean(), int8_errors.max())


@pytest.mark.parametrize("num_beams", [1, 4])
@torch.no_grad()
def test_ctranslate2_decodes_like_ours(ct2, tokenizer, num_beams):
    model, fp32, _ = ct2
    sources = random_sources(len(tokenizer), 24)
    results = translator(fp32).translate_batch(
        [tokenizer.convert_ids_to_tokens(s) for s in sources],
        beam_size=num_beams,
        length_penalty=0.6,
        max_decoding_length=20,
        min_decoding_length=0,
        return_scores=True,
    )
    lengths = set()
    for source, result in zip(sources, results, strict=True):
        out = model.generate(
            input_ids=torch.tensor([source]),
            num_beams=num_beams,
            **({"length_penalty": 0.6} if num_beams > 1 else {}),
            max_new_tokens=20,
            return_dict_in_generate=True,
            output_scores=True,
        )
        ours = until_eos(out.sequences[0].tolist())
        assert tokenizer.convert_tokens_to_ids(result.hypotheses[0]) == ours
        if num_beams > 1:  # CTranslate2's length penalty is transformers' score / len**alpha, len counting </s>
            assert result.scores[0] == pytest.approx(out.sequences_scores.item(), abs=1e-4)
        lengths.add(len(ours) if EOS in out.sequences[0] else "limit")
    assert {0, "limit"} < lengths and len(lengths) >= 4, lengths  # the test saw every kind of ending


@torch.no_grad()
def test_int8_runs_and_mostly_agrees(ct2, tokenizer):
    _, fp32, int8 = ct2
    sources = [tokenizer.convert_ids_to_tokens(s) for s in random_sources(len(tokenizer), 40, seed=3)]
    settings = dict(beam_size=4, length_penalty=0.6, max_decoding_length=20, min_decoding_length=0)
    exact = translator(fp32).translate_batch(sources, **settings)
    quantized = translator(int8).translate_batch(sources, **settings)
    same = sum(a.hypotheses[0] == b.hypotheses[0] for a, b in zip(exact, quantized, strict=True))
    # Random weights have many near-ties; see --check multi30k for a trained model. Without VNNI (saturating int8
    # sums) 13 of these 40 were identical on an AVX2-only AMD EPYC.
    share = 0.2 if int8_sums_saturate() else 0.6
    assert same >= share * len(sources), same


@pytest.mark.parametrize(
    "flags, saturate",
    [
        ({"sse4_2", "avx2", "fma"}, True),  # AVX2 only (the session-15 AMD EPYC)
        ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, False),
        ({"avx2", "avx_vnni"}, False),
        ({"avx2", "avx512f", "amx_int8", "amx_tile"}, False),
        (set(), False),  # unknown CPU (no /proc/cpuinfo): no claim
        ({"asimd", "fp"}, False),  # not x86
    ],
)
def test_int8_saturation_is_told_from_the_cpu_flags(flags, saturate):
    assert int8_sums_saturate(flags) is saturate


def test_translating_with_int8_warns_where_sums_saturate(ct2, monkeypatch, caplog):
    from train import translate as translate_module

    _, fp32, int8 = ct2
    monkeypatch.setattr(translate_module, "int8_sums_saturate", lambda: True)
    with caplog.at_level(logging.WARNING, logger="train.translate"):
        translate_module.translate_with_ctranslate2(fp32, ["a"], num_beams=1, length_penalty=1.0)
        assert "without VNNI" not in caplog.text
        translate_module.translate_with_ctranslate2(int8, ["a"], num_beams=1, length_penalty=1.0)
    assert "CTranslate2 int8 on a CPU without VNNI" in caplog.text


@torch.no_grad()
def test_translate_with_ctranslate2_gives_our_translations(ct2, tokenizer):
    from train.translate import translate, translate_with_ctranslate2

    model, fp32, _ = ct2
    texts = [*SAMPLE_LINES, "Hunde.", "A man, a dog; zwei Hunde!"]
    for num_beams in (1, 4):
        expected = translate(model, tokenizer, texts, num_beams=num_beams, length_penalty=0.6)
        assert translate_with_ctranslate2(fp32, texts, num_beams=num_beams, length_penalty=0.6) == expected
    expected = translate(model, tokenizer, texts, num_beams=4, max_new_tokens=3)
    assert translate_with_ctranslate2(fp32, texts, num_beams=4, max_new_tokens=3) == expected
    # Blank texts are not decoded (as the translate CLI and the pipeline): CTranslate2 would return "" anyway.
    assert translate_with_ctranslate2(fp32, ["", "Hunde.", " "]) == ["", translate(model, tokenizer, ["Hunde."])[0], ""]
    with pytest.raises(TypeError, match="list of sentences"):
        translate_with_ctranslate2(fp32, "Hunde.")


def test_ctranslate2_refuses_what_it_cannot_express(tokenizer, tmp_path):
    pytest.importorskip("ctranslate2", reason="CTranslate2 export needs ctranslate2 (the `export` extra)")
    from train.export import export_ctranslate2

    heads = tiny_model(vocab_size=len(tokenizer), encoder_attention_heads=2, decoder_attention_heads=8)
    heads.generation_config.length_penalty_form = "hf"
    with pytest.raises(ValueError, match="encoder_attention_heads=2 and decoder_attention_heads=8 cannot be"):
        export_ctranslate2(heads, tokenizer, tmp_path / "heads")
    vocab = tiny_model(vocab_size=len(tokenizer) + 5)
    vocab.generation_config.length_penalty_form = "hf"
    with pytest.raises(ValueError, match=f"has {len(tokenizer)} tokens but the model's vocab_size is"):
        export_ctranslate2(vocab, tokenizer, tmp_path / "vocab")
    with pytest.raises(ValueError, match="layer_norm_position='pre' cannot be converted to Marian"):
        export_ctranslate2(tiny_model(layer_norm_position="pre"), tokenizer, tmp_path / "pre")


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    """A model folder as training writes it (generation config: the paper's GNMT penalty)."""
    folder = tmp_path_factory.mktemp("model")
    model = mixed_length_model(len(tokenizer))
    model.generation_config.length_penalty_form = "gnmt"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_cli_exports(model_dir, tmp_path, capsys):
    pytest.importorskip("ctranslate2", reason="CTranslate2 export needs ctranslate2 (the `export` extra)")
    from transformers import MarianMTModel

    from train.export import main
    from train.translate import load_model, translate, translate_with_ctranslate2

    with pytest.warns(UserWarning, match="GNMT length penalty"):
        main([str(model_dir), "--to", "marian", "--output", str(tmp_path / "marian")])
    assert type(MarianMTModel.from_pretrained(tmp_path / "marian")) is MarianMTModel
    for name, extra in (("fp32", []), ("int8", ["--quantization", "int8"])):
        with pytest.warns(UserWarning, match="GNMT length penalty"):
            main([str(model_dir), "--to", "ctranslate2", "--output", str(tmp_path / name), *extra])
        assert "wrote ctranslate2 export" in capsys.readouterr().out
    model, tokenizer = load_model(model_dir)
    model.generation_config.length_penalty_form = "hf"
    assert translate_with_ctranslate2(tmp_path / "fp32", SAMPLE_LINES) == translate(model, tokenizer, SAMPLE_LINES)
    assert len(translate_with_ctranslate2(tmp_path / "int8", SAMPLE_LINES)) == len(SAMPLE_LINES)

    for argv, message in [
        (["--to", "marian", "--output", str(tmp_path / "marian")], "is not empty; pass --force"),
        (["--to", "marian", "--output", str(tmp_path / "x"), "--quantization", "int8"], "applies to --to ctranslate2"),
        (["--to", "onnx"], "--to needs --output"),
        ([], "exactly one of --to FORMAT or --check"),
    ]:
        with pytest.raises(SystemExit):
            main([str(model_dir), *argv])
        assert message in capsys.readouterr().err


@pytest.mark.skipif(not MULTI30K.is_dir(), reason=f"Multi30k not found at {MULTI30K}")
def test_check_multi30k_reports_bleu_and_agreement(model_dir, capsys):
    pytest.importorskip("ctranslate2", reason="CTranslate2 export needs ctranslate2 (the `export` extra)")
    from train.export import check_multi30k, main

    results = check_multi30k(model_dir, max_samples=3)
    systems = results["systems"]
    assert list(systems) == [
        "ours (gnmt length penalty)",
        "ours (hf length penalty)",
        "ctranslate2 float32",
        "ctranslate2 int8",
    ]
    assert results["num_sentences"] == 3 and all(len(h) == 3 for h in results["hypotheses"].values())
    assert systems["ours (hf length penalty)"]["identical_to_ours_hf"] == 1.0
    assert systems["ctranslate2 float32"]["identical_to_ours_hf"] == 1.0
    assert all(0 <= system["bleu"] <= 100 for system in systems.values())
    assert results["int8_bleu_loss"] == systems["ctranslate2 float32"]["bleu"] - systems["ctranslate2 int8"]["bleu"]
    assert results["int8_sums_saturate"] is int8_sums_saturate() and results["machine"]["cpu_flags"] is not None

    main([str(model_dir), "--check", "multi30k", "--max-samples", "1", "--beams", "1"])
    out = capsys.readouterr().out
    assert "Multi30k test: 1 sentences, beam 1" in out and "ctranslate2 int8" in out and "int8 BLEU loss" in out


# ---- ONNX -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_export(model_dir, tmp_path_factory):
    """The model folder exported by the command line, and the model as `train.translate` loads it."""
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript and onnx (the `export` extra)")
    pytest.importorskip("onnxruntime", reason="running the ONNX export needs onnxruntime (the `export` extra)")
    from train.export import OnnxSeq2Seq, main
    from train.translate import load_model

    folder = tmp_path_factory.mktemp("onnx")
    main([str(model_dir), "--to", "onnx", "--output", str(folder), "--force"])
    assert {"encoder.onnx", "decoder.onnx", "config.json", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    return load_model(model_dir)[0], OnnxSeq2Seq(folder)


@pytest.mark.parametrize(("batch", "src_len", "tgt_len"), [(3, 7, 5), (1, 3, 1), (6, 13, 11)])
@torch.no_grad()
def test_onnx_logits_equal_ours(onnx_export, batch, src_len, tgt_len):
    """Shapes other than the export's sample (4 source, 3 target positions, batch 2): the axes are dynamic."""
    model, onnx = onnx_export
    inputs = random_batch(vocab_size=model.config.vocab_size, batch=batch, src_len=src_len, tgt_len=tgt_len, seed=batch)
    expected = model(**inputs).logits
    got = onnx.logits(*(inputs[name].numpy() for name in ("input_ids", "attention_mask", "decoder_input_ids")))
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_onnx_greedy_decoding_equals_ours(onnx_export):
    model, onnx = onnx_export
    inputs = random_batch(vocab_size=model.config.vocab_size, batch=6, src_len=9, seed=7)
    expected = model.generate(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], num_beams=1, max_new_tokens=15
    )
    got = onnx.generate_greedy(inputs["input_ids"].numpy(), inputs["attention_mask"].numpy(), max_new_tokens=15)
    assert torch.equal(torch.from_numpy(got), expected)
    finished = (expected == EOS).any(dim=1)
    assert finished.any() and not finished.all()  # rows that end early (then padded) and rows that hit the limit


@pytest.mark.parametrize(
    ("package", "call"), [("ctranslate2", "translate"), ("onnxruntime", "onnx"), ("onnxscript", "export")]
)
def test_missing_packages_name_the_extra(monkeypatch, tmp_path, package, call):
    from train import export
    from train.translate import translate_with_ctranslate2

    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    with pytest.raises(
        ImportError, match=rf"needs the `{package}` package: pip install 'hf-vanilla-transformer\[export\]'"
    ):
        if call == "translate":
            translate_with_ctranslate2(tmp_path, ["Hunde."])
        elif call == "onnx":
            export.OnnxSeq2Seq(tmp_path)
        else:
            export.export_onnx(tiny_model(), None, tmp_path)
