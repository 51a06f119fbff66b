// A small, safe markdown renderer for chat bubbles.
//
// Hand-rolled on purpose: the pages load nothing from a CDN and use no bundler, and a vendored
// markdown library plus an HTML sanitiser would be many times larger than the subset chat
// replies need. Safety comes from construction, not from escaping: the output is built with
// DOM APIs and every piece of model or user text enters the page through text nodes, so no
// text can become markup. Links are made only for http(s) URLs.
//
// Subset: paragraphs, line breaks, **bold**, *italic*, `inline code`, fenced ```
// code blocks, bullet (-, *, +) and numbered (1. / 1)) lists, [label](http(s) URL) and bare
// http(s) URLs.

const FENCE = /^\s*```/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*\d{1,9}[.)]\s+(.*)$/;
const SAFE_URL = /^https?:\/\/[^\s]+$/i;

/** `text` as a DocumentFragment of the markdown subset above. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (FENCE.test(line)) {
      const code = [];
      i += 1;
      while (i < lines.length && !FENCE.test(lines[i])) {
        code.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (or the end of a reply still streaming)
      const pre = document.createElement('pre');
      const codeEl = document.createElement('code');
      codeEl.textContent = code.join('\n');
      pre.append(codeEl);
      fragment.append(pre);
      continue;
    }
    if (BULLET.test(line) || NUMBERED.test(line)) {
      const ordered = !BULLET.test(line);
      const pattern = ordered ? NUMBERED : BULLET;
      const list = document.createElement(ordered ? 'ol' : 'ul');
      while (i < lines.length && pattern.test(lines[i])) {
        const item = document.createElement('li');
        appendInline(item, lines[i].match(pattern)[1]);
        list.append(item);
        i += 1;
      }
      fragment.append(list);
      continue;
    }
    if (line.trim() === '') {
      i += 1;
      continue;
    }
    const paragraph = document.createElement('p');
    let first = true;
    while (
      i < lines.length &&
      lines[i].trim() !== '' &&
      !FENCE.test(lines[i]) &&
      !BULLET.test(lines[i]) &&
      !NUMBERED.test(lines[i])
    ) {
      if (!first) paragraph.append(document.createElement('br'));
      appendInline(paragraph, lines[i]);
      first = false;
      i += 1;
    }
    fragment.append(paragraph);
  }
  return fragment;
}

// One alternative per inline form, tried left to right; the earliest match wins.
const INLINE =
  /(`+)([^`]+?)\1|\*\*(?=\S)([\s\S]+?)\*\*|\*(?=\S)([^*]+?)\*|\[([^\]\n]+)\]\(([^)\s]+)\)|(https?:\/\/[^\s<>()"']+[^\s<>()"'.,;:!?])/i;

/** Appends `text` to `parent` with the inline forms applied; everything else stays text. */
function appendInline(parent, text, depth = 0) {
  let rest = text;
  while (rest.length > 0) {
    const match = depth > 4 ? null : INLINE.exec(rest);
    if (!match) {
      parent.append(document.createTextNode(rest));
      return;
    }
    if (match.index > 0) parent.append(document.createTextNode(rest.slice(0, match.index)));
    const [whole, , code, bold, italic, label, href, bare] = match;
    if (code !== undefined) {
      const node = document.createElement('code');
      node.textContent = code;
      parent.append(node);
    } else if (bold !== undefined) {
      const node = document.createElement('strong');
      appendInline(node, bold, depth + 1);
      parent.append(node);
    } else if (italic !== undefined) {
      const node = document.createElement('em');
      appendInline(node, italic, depth + 1);
      parent.append(node);
    } else if (label !== undefined) {
      if (SAFE_URL.test(href)) {
        parent.append(link(href, label));
      } else {
        parent.append(document.createTextNode(whole));
      }
    } else if (bare !== undefined) {
      parent.append(link(bare, bare));
    }
    rest = rest.slice(match.index + whole.length);
  }
}

function link(href, label) {
  const anchor = document.createElement('a');
  anchor.href = href;
  anchor.textContent = label;
  anchor.rel = 'noopener noreferrer';
  anchor.target = '_blank';
  return anchor;
}
