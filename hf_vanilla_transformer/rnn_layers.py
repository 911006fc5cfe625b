"""Building blocks of the recurrent encoder-decoders: the RNN encoder, additive attention, and the two decoders.

Notation of the papers: source words x_1..x_S, target words y_1..y_T, encoder states / annotations h_j, decoder
states s_i (Bahdanau et al. 2015) or the decoder LSTM's hidden state (Sutskever et al. 2014).

State layout. torch's `nn.GRU` / `nn.LSTM` keep their state as `h` (layers * directions, B, H), plus `c` for an LSTM.
Between modules and in the generation cache the state is kept *batch first* as one tensor (B, L, k, H), with k = 1
(`h`) for a GRU and k = 2 (`h`, `c`) for an LSTM, so that `generate()` can expand it for beams and reorder it along
the batch axis like any other tensor (`to_batch_first`, `to_module_state`).

Padding. Source tokens whose `attention_mask` is 0 are skipped: each row's tokens are moved to the front (in
reverse order for Sutskever et al.'s reversed source), run as a packed sequence (so a backward RNN starts at the
row's last real token and final states are those after its last real token), and the outputs are put back at the
tokens' positions, zeros at padding. The decoder never attends to padding (`AdditiveAttention`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers.modeling_outputs import BaseModelOutput

from .configuration_rnn_seq2seq import RecurrentSeq2SeqConfig


def recurrent_layers(
    cell_type: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool = False
) -> nn.RNNBase:
    """A stack of `num_layers` GRU or LSTM layers (batch first), with dropout between them."""
    rnn_class = {"gru": nn.GRU, "lstm": nn.LSTM}[cell_type]
    return rnn_class(
        input_size,
        hidden_size,
        num_layers=num_layers,
        dropout=dropout if num_layers > 1 else 0.0,
        batch_first=True,
        bidirectional=bidirectional,
    )


def to_batch_first(state: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """torch's RNN state `h` or `(h, c)`, each (L, B, H) -> (B, L, k, H)."""
    parts = state if isinstance(state, tuple) else (state,)
    return torch.stack(parts, dim=2).transpose(0, 1)


def to_module_state(state: torch.Tensor, cell_type: str) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """(B, L, k, H) -> torch's RNN state: `h` (L, B, H) for a GRU, `(h, c)` for an LSTM."""
    parts = tuple(part.contiguous() for part in state.transpose(0, 1).unbind(dim=2))
    return parts if cell_type == "lstm" else parts[0]


def top_hidden(state: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The top layer's hidden state `h` (B, H) of torch's RNN state."""
    return (state[0] if isinstance(state, tuple) else state)[-1]


@dataclass
class RecurrentEncoderOutput(BaseModelOutput):
    """`last_hidden_state` (B, S, D): the top layer's output at each source token (D = H, or 2H when bidirectional:
    Bahdanau et al.'s annotations h_j), zeros at padding. `final_state` (B, layers * directions, k, H): each layer's
    (and direction's) state after reading the whole sentence, in torch's order (layer-major, forward before
    backward)."""

    final_state: torch.Tensor | None = None


class RecurrentEncoder(nn.Module):
    """Embeds the source and reads it with a (bidirectional) stacked RNN, skipping padding."""

    def __init__(
        self, config: RecurrentSeq2SeqConfig, embed_tokens: nn.Embedding, bidirectional: bool, reverse_source: bool
    ):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.reverse_source = reverse_source
        self.dropout = config.dropout
        self.rnn = recurrent_layers(
            config.cell_type,
            config.embedding_size,
            config.hidden_size,
            config.encoder_layers,
            config.dropout,
            bidirectional=bidirectional,
        )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> RecurrentEncoderOutput:
        """input_ids (B, S) or inputs_embeds (B, S, E); attention_mask (B, S), 1 for tokens and 0 for padding."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("encoder: pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch_size, source_length = inputs_embeds.shape[:2]
        if source_length == 0:
            raise ValueError(f"encoder: the source is empty (shape {tuple(inputs_embeds.shape[:2])})")
        if attention_mask is None:
            attention_mask = torch.ones(batch_size, source_length, dtype=torch.long, device=inputs_embeds.device)
        is_token = attention_mask.bool()
        lengths = is_token.sum(dim=1)
        if (lengths == 0).any():
            rows = (lengths == 0).nonzero().flatten().tolist()
            raise ValueError(f"encoder: rows {rows} of attention_mask hold no token; every source needs at least one")

        # Reading order: each row's tokens first (reversed for Sutskever et al. §3.3), then its padding.
        positions = torch.arange(source_length, device=inputs_embeds.device).expand(batch_size, -1)
        token_key = -positions if self.reverse_source else positions
        order = torch.where(is_token, token_key, source_length + positions).argsort(dim=1)
        embedded = inputs_embeds.gather(1, order[..., None].expand_as(inputs_embeds))
        embedded = nn.functional.dropout(embedded, p=self.dropout, training=self.training)

        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final_state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=source_length)
        # Back to the tokens' own positions; padding positions get the zeros pad_packed_sequence wrote.
        outputs = torch.zeros_like(outputs).scatter(1, order[..., None].expand_as(outputs), outputs)
        return RecurrentEncoderOutput(last_hidden_state=outputs, final_state=to_batch_first(final_state))


class AdditiveAttention(nn.Module):
    """The alignment model of Bahdanau et al. (2015), §3.1 eqs. (5)-(6) and Appendix A.1.2:

        e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j),   alpha_ij = softmax_j(e_ij),   c_i = sum_j alpha_ij h_j

    with W_a (n' x n), U_a (n' x 2n) and v_a (n'), no biases, as in the paper. Padding positions get energy -inf,
    hence weight exactly 0.
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int):
        super().__init__()
        self.W_a = nn.Parameter(torch.empty(attention_size, query_size))
        self.U_a = nn.Parameter(torch.empty(attention_size, key_size))
        self.v_a = nn.Parameter(torch.empty(attention_size))

    def project_keys(self, annotations: torch.Tensor) -> torch.Tensor:
        """U_a h_j for all j, (B, S, 2n) -> (B, S, n'): the same at every decoder step, so computed once."""
        return nn.functional.linear(annotations, self.U_a)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, annotations: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query s_{i-1} (B, n), keys U_a h_j (B, S, n'), annotations h_j (B, S, 2n), mask (B, S) bool (True for
        tokens) -> context c_i (B, 2n) and the weights alpha_i (B, S)."""
        hidden = torch.tanh(nn.functional.linear(query, self.W_a)[:, None, :] + keys)
        energies = (hidden @ self.v_a.to(hidden.dtype)).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(energies.float(), dim=-1).to(annotations.dtype)
        context = torch.bmm(weights[:, None, :], annotations).squeeze(1)
        return context, weights


class PlainDecoder(nn.Module):
    """The decoder of Sutskever et al. (2014): a stacked RNN that starts from the encoder's final state and reads the
    target prefix; the source reaches it only through that state.

    `output_projection` maps the top layer's hidden state to the embedding space, where the (tied) output layer
    scores the vocabulary (Sutskever et al. put the softmax directly on the hidden state; they did not tie).
    """

    def __init__(self, config: RecurrentSeq2SeqConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.cell_type = config.cell_type
        self.dropout = config.dropout
        self.rnn = recurrent_layers(
            config.cell_type, config.embedding_size, config.hidden_size, config.decoder_layers, config.dropout
        )
        self.output_projection = nn.Linear(config.hidden_size, config.embedding_size, bias=False)

    def initial_state(self, encoder_outputs: RecurrentEncoderOutput) -> torch.Tensor:
        """The encoder's final state of each layer, (B, L, k, H) (Sutskever et al. §2)."""
        return encoder_outputs.final_state

    def forward(
        self, inputs_embeds: torch.Tensor, state: torch.Tensor, encoder_outputs: RecurrentEncoderOutput, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """inputs_embeds (B, T, E) of the target prefix, state (B, L, k, H) -> output features (B, T, E), the new
        state, and no attention weights."""
        embedded = nn.functional.dropout(inputs_embeds, p=self.dropout, training=self.training)
        outputs, state = self.rnn(embedded, to_module_state(state, self.cell_type))
        outputs = nn.functional.dropout(outputs, p=self.dropout, training=self.training)
        return self.output_projection(outputs), to_batch_first(state), None


class AttentionDecoder(nn.Module):
    """The RNNsearch decoder of Bahdanau et al. (2015), Appendix A.2.2, one target word per step i:

        c_i = sum_j alpha_ij h_j                       (additive attention on s_{i-1}, `AdditiveAttention`)
        s_i = RNN([E y_{i-1}; c_i], s_{i-1})           (the paper's gated unit with inputs E y_{i-1} and c_i)
        t~_i = U_o s_i + V_o E y_{i-1} + C_o c_i       (`readout`, one linear map of the concatenation)
        t_i = [max(t~_{i,2j-1}, t~_{i,2j})]_j          (maxout with pools of two, Goodfellow et al. 2013)

    and p(y_i | ...) = softmax(W_o t_i), W_o being the output layer (tied to the embeddings here, so t_i has the
    embedding size where the paper has l = 500). The output uses s_i as in the paper's eq. (4), g(y_{i-1}, s_i, c_i);
    Appendix A.2.2 writes s_{i-1} there. With several decoder layers the first reads [E y_{i-1}; c_i], the top
    layer's state is the attention query and the readout's s_i. The initial state is s_0 = tanh(W_s h_1(backward))
    for every layer (`init_state`; an LSTM's cell starts at 0).
    """

    def __init__(self, config: RecurrentSeq2SeqConfig, embed_tokens: nn.Embedding):
        super().__init__()
        hidden, embedding, annotation = config.hidden_size, config.embedding_size, 2 * config.hidden_size
        self.embed_tokens = embed_tokens
        self.cell_type = config.cell_type
        self.num_layers = config.decoder_layers
        self.dropout = config.dropout
        self.init_state = nn.Linear(hidden, config.decoder_layers * hidden)  # W_s (with a bias)
        self.attention = AdditiveAttention(hidden, annotation, config.attention_size)
        self.rnn = recurrent_layers(
            config.cell_type, embedding + annotation, hidden, config.decoder_layers, config.dropout
        )
        self.readout = nn.Linear(hidden + embedding + annotation, 2 * embedding)  # [U_o V_o C_o]

    def initial_state(self, encoder_outputs: RecurrentEncoderOutput) -> torch.Tensor:
        """s_0 = tanh(W_s h_1(backward)) (B, L, k, H): the backward RNN's top layer ends at the first word."""
        backward_top = encoder_outputs.final_state[:, -1, 0]  # (B, H)
        batch_size, hidden = backward_top.shape
        h0 = torch.tanh(self.init_state(backward_top)).view(batch_size, self.num_layers, 1, hidden)
        if self.cell_type == "lstm":
            return torch.cat([h0, torch.zeros_like(h0)], dim=2)
        return h0

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        state: torch.Tensor,
        encoder_outputs: RecurrentEncoderOutput,
        encoder_mask: torch.Tensor,
        attention_keys: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """inputs_embeds E y_{i-1} (B, T, E), state s_{i-1} (B, L, k, H), the annotations in `encoder_outputs`,
        encoder_mask (B, S) bool, attention_keys U_a h_j (B, S, n') -> output features t_i (B, T, E), the new state,
        and the attention weights alpha (B, T, S)."""
        annotations = encoder_outputs.last_hidden_state
        embedded = nn.functional.dropout(inputs_embeds, p=self.dropout, training=self.training)
        module_state = to_module_state(state, self.cell_type)
        outputs, contexts, weights = [], [], []
        for i in range(embedded.shape[1]):
            context, alpha = self.attention(top_hidden(module_state), attention_keys, annotations, encoder_mask)
            output, module_state = self.rnn(torch.cat([embedded[:, i], context], dim=-1)[:, None], module_state)
            outputs.append(output[:, 0])
            contexts.append(context)
            weights.append(alpha)
        states, contexts = torch.stack(outputs, dim=1), torch.stack(contexts, dim=1)
        readout = self.readout(torch.cat([states, embedded, contexts], dim=-1))
        features = readout.unflatten(-1, (-1, 2)).amax(dim=-1)  # maxout over pairs (t~_{2j-1}, t~_{2j})
        features = nn.functional.dropout(features, p=self.dropout, training=self.training)
        return features, to_batch_first(module_state), torch.stack(weights, dim=1)
