// Command decide reads request bodies with Go's own encoding/json, the way Ollama
// does (json.NewDecoder(body).Decode(&req), as gin's ShouldBindJSON), and prints what
// Ollama would decide from them. tests/doubles/test_gojson_against_go.py compares its
// answers with the Ollama double's Go-semantics reader (tests/doubles/ollama/gojson.py).
//
// The structs are written here with the json tags of Ollama's request structs
// (api/types.go, openai/openai.go, openai/responses.go, anthropic/anthropic.go), with
// only the fields the gateway acts on.
//
// Protocol: one JSON object per line on stdin, {"path": "/api/chat", "body": <base64>};
// one per line on stdout, the decision or {"error": "..."}.
// With the argument "fold-table" it prints every non-ASCII rune that Go's key matching
// treats as equal to an ASCII letter instead.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"unicode"
)

type tool struct {
	Type string `json:"type"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type generateRequest struct {
	Model           string           `json:"model"`
	Prompt          string           `json:"prompt"`
	Suffix          string           `json:"suffix"`
	System          string           `json:"system"`
	Template        string           `json:"template"`
	Stream          *bool            `json:"stream,omitempty"`
	KeepAlive       *json.RawMessage `json:"keep_alive,omitempty"`
	Options         map[string]any   `json:"options"`
	DebugRenderOnly bool             `json:"_debug_render_only,omitempty"`
}

type chatRequest struct {
	Model           string           `json:"model"`
	Messages        any              `json:"messages"`
	Stream          *bool            `json:"stream,omitempty"`
	KeepAlive       *json.RawMessage `json:"keep_alive,omitempty"`
	Tools           []tool           `json:"tools,omitempty"`
	Options         map[string]any   `json:"options"`
	DebugRenderOnly bool             `json:"_debug_render_only,omitempty"`
}

type embedRequest struct {
	Model     string           `json:"model"`
	Input     any              `json:"input"`
	KeepAlive *json.RawMessage `json:"keep_alive,omitempty"`
	Options   map[string]any   `json:"options"`
}

type embeddingRequest struct {
	Model     string           `json:"model"`
	Prompt    string           `json:"prompt"`
	KeepAlive *json.RawMessage `json:"keep_alive,omitempty"`
	Options   map[string]any   `json:"options"`
}

type showRequest struct {
	Model   string         `json:"model"`
	Options map[string]any `json:"options"`
	Name    string         `json:"name"`
}

type chatCompletionRequest struct {
	Model           string         `json:"model"`
	Messages        any            `json:"messages"`
	Stream          bool           `json:"stream"`
	StreamOptions   *streamOptions `json:"stream_options"`
	MaxTokens       *int           `json:"max_tokens"`
	Tools           []tool         `json:"tools"`
	DebugRenderOnly bool           `json:"_debug_render_only"`
}

type completionRequest struct {
	Model           string         `json:"model"`
	Prompt          string         `json:"prompt"`
	MaxTokens       *int           `json:"max_tokens"`
	Stream          bool           `json:"stream"`
	StreamOptions   *streamOptions `json:"stream_options"`
	Suffix          string         `json:"suffix"`
	DebugRenderOnly bool           `json:"_debug_render_only"`
}

type openaiEmbedRequest struct {
	Input          any    `json:"input"`
	Model          string `json:"model"`
	EncodingFormat string `json:"encoding_format,omitempty"`
}

type messagesRequest struct {
	Model     string `json:"model"`
	MaxTokens int    `json:"max_tokens"`
	System    any    `json:"system,omitempty"`
	Messages  any    `json:"messages"`
	Stream    bool   `json:"stream,omitempty"`
	Tools     []tool `json:"tools,omitempty"`
}

type responsesRequest struct {
	Model           string `json:"model"`
	Input           any    `json:"input"`
	Instructions    string `json:"instructions,omitempty"`
	MaxOutputTokens *int   `json:"max_output_tokens,omitempty"`
	Tools           []tool `json:"tools,omitempty"`
	Stream          *bool  `json:"stream,omitempty"`
}

type decision struct {
	Model           string         `json:"model"`
	Stream          bool           `json:"stream"`
	Cap             *int64         `json:"cap"`
	Options         map[string]any `json:"options"`
	KeepAlive       bool           `json:"keep_alive"`
	DebugRenderOnly bool           `json:"debug_render_only"`
	Tools           []string       `json:"tools"`
	IncludeUsage    bool           `json:"include_usage"`
}

func decodeInto(body []byte, req any) error {
	return json.NewDecoder(bytes.NewReader(body)).Decode(req)
}

// numPredict is options.num_predict as Ollama's Options.FromMap sets it.
func numPredict(options map[string]any) (*int64, error) {
	value, ok := options["num_predict"]
	if !ok || value == nil {
		return nil, nil
	}
	f, ok := value.(float64)
	if !ok {
		return nil, errors.New(`option "num_predict" must be of type integer`)
	}
	if f < -9223372036854775808.0 || f >= 9223372036854775808.0 {
		return nil, errors.New(`option "num_predict" is out of the range of int64`)
	}
	n := int64(f)
	return &n, nil
}

func boolOr(value *bool, fallback bool) bool {
	if value == nil {
		return fallback
	}
	return *value
}

func intCap(value *int) *int64 {
	if value == nil {
		return nil
	}
	n := int64(*value)
	return &n
}

func toolTypes(tools []tool) []string {
	types := []string{}
	for _, t := range tools {
		types = append(types, t.Type)
	}
	return types
}

func usage(options *streamOptions) bool {
	return options != nil && options.IncludeUsage
}

func decide(path string, body []byte) (decision, error) {
	d := decision{Tools: []string{}}
	var err error
	switch path {
	case "/api/generate":
		var r generateRequest
		if err = decodeInto(body, &r); err == nil {
			d.Model, d.Stream, d.Options = r.Model, boolOr(r.Stream, true), r.Options
			d.KeepAlive, d.DebugRenderOnly = r.KeepAlive != nil, r.DebugRenderOnly
			d.Cap, err = numPredict(r.Options)
		}
	case "/api/chat":
		var r chatRequest
		if err = decodeInto(body, &r); err == nil {
			d.Model, d.Stream, d.Options = r.Model, boolOr(r.Stream, true), r.Options
			d.KeepAlive, d.DebugRenderOnly = r.KeepAlive != nil, r.DebugRenderOnly
			d.Tools = toolTypes(r.Tools)
			d.Cap, err = numPredict(r.Options)
		}
	case "/api/embed":
		var r embedRequest
		if err = decodeInto(body, &r); err == nil {
			d.Model, d.Options, d.KeepAlive = r.Model, r.Options, r.KeepAlive != nil
		}
	case "/api/embeddings":
		var r embeddingRequest
		if err = decodeInto(body, &r); err == nil {
			d.Model, d.Options, d.KeepAlive = r.Model, r.Options, r.KeepAlive != nil
		}
	case "/api/show":
		var r showRequest
		if err = decodeInto(body, &r); err == nil {
			d.Model, d.Options = r.Model, r.Options
			if d.Model == "" {
				d.Model = r.Name
			}
		}
	case "/v1/chat/completions":
		var r chatCompletionRequest
		if err = decodeInto(body, &r); err == nil {
			d.Model, d.Stream, d.Cap = r.Model, r.Stream, intCap(r.MaxTokens)
			d.Tools, d.IncludeUsage = toolTypes(r.Tools), usage(r.StreamOptions)
			d.DebugRenderOnly = r.DebugRenderOnly
		}
	case "/v1/completions":
		var r completionRequest
		if err = decodeInto(body, &r); err == nil {
			d.Model, d.Stream, d.Cap = r.Model, r.Stream, intCap(r.MaxTokens)
			d.IncludeUsage, d.DebugRenderOnly = usage(r.StreamOptions), r.DebugRenderOnly
		}
	case "/v1/embeddings":
		var r openaiEmbedRequest
		if err = decodeInto(body, &r); err == nil {
			d.Model = r.Model
		}
	case "/v1/messages":
		var r messagesRequest
		if err = decodeInto(body, &r); err == nil {
			n := int64(r.MaxTokens)
			d.Model, d.Stream, d.Cap, d.Tools = r.Model, r.Stream, &n, toolTypes(r.Tools)
		}
	case "/v1/responses":
		var r responsesRequest
		if err = decodeInto(body, &r); err == nil {
			d.Model, d.Stream, d.Cap = r.Model, boolOr(r.Stream, false), intCap(r.MaxOutputTokens)
			d.Tools = toolTypes(r.Tools)
		}
	default:
		err = fmt.Errorf("no struct for %s", path)
	}
	return d, err
}

// foldTable prints the non-ASCII runes whose simple case folding orbit holds an ASCII
// letter: the only ones that can match an ASCII field name.
func foldTable(out *bufio.Writer) {
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < 0x80 {
				fmt.Fprintf(out, "%d %c\n", r, f)
				break
			}
		}
	}
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	if len(os.Args) > 1 && os.Args[1] == "fold-table" {
		foldTable(out)
		return
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	encoder := json.NewEncoder(out)
	for in.Scan() {
		var request struct {
			Path string `json:"path"`
			Body []byte `json:"body"`
		}
		if err := json.Unmarshal(in.Bytes(), &request); err != nil {
			fmt.Fprintln(os.Stderr, "bad request line:", err)
			os.Exit(2)
		}
		d, err := decide(request.Path, request.Body)
		if err != nil {
			_ = encoder.Encode(map[string]string{"error": err.Error()})
		} else {
			_ = encoder.Encode(d)
		}
		out.Flush()
	}
}
