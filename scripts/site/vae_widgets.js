// The course's widgets, live in a static page: no Python, no network.
//
// The build (vae_course/browser.py) wrote each widget's spec into window.VAE_WIDGETS[id]: for
// latent sliders the trained decoder's weights (base64 float32) and the sliders' range; for the
// KL explorer the sliders' ranges. Every element <div class="vae-widget" data-widget="id"> is
// turned into sliders and a picture. Moving a slider decodes z here, in the browser:
// h = activation(W h + b), layer by layer, then the sigmoid (the Bernoulli decoder's pixel means).
(function () {
  "use strict";

  function floats(base64) {
    // base64 of little-endian float32 -> Float32Array
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return new Float32Array(bytes.buffer);
  }

  // A decoder: its layers unpacked once.
  function decoder(spec) {
    return spec.layers.map((layer) => ({
      rows: layer.rows, cols: layer.cols, activation: layer.activation,
      weight: floats(layer.weight), bias: floats(layer.bias),
    }));
  }

  // Decode one z (and label): returns the pixels in [0, 1], row by row.
  function decode(spec, layers, z, label) {
    let h = Float32Array.from(z);
    if (spec.num_classes) { // the label enters as a one-hot vector after z: [z, one_hot(y)]
      const input = new Float32Array(z.length + spec.num_classes);
      input.set(h);
      input[z.length + label] = 1;
      h = input;
    }
    for (const layer of layers) {
      const out = new Float32Array(layer.rows);
      for (let i = 0; i < layer.rows; i++) {
        let sum = layer.bias[i];
        const row = i * layer.cols;
        for (let j = 0; j < layer.cols; j++) sum += layer.weight[row + j] * h[j];
        if (layer.activation === "relu") sum = Math.max(sum, 0);
        else if (layer.activation === "tanh") sum = Math.tanh(sum);
        else if (layer.activation === "elu") sum = sum > 0 ? sum : Math.expm1(sum);
        out[i] = sum;
      }
      h = out;
    }
    return h.map((v) => (spec.pixels === "sigmoid" ? 1 / (1 + Math.exp(-v)) : Math.min(1, Math.max(0, v))));
  }

  function element(tag, attributes, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attributes || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // One labelled range input; calls onInput(value) as it moves.
  function slider(name, label, min, max, step, value, onInput) {
    const row = element("label", { class: "vae-slider" });
    const input = element("input", { type: "range", min, max, step, value, name, "aria-label": label });
    const readout = element("output", {}, Number(value).toFixed(2));
    input.addEventListener("input", () => { readout.textContent = Number(input.value).toFixed(2); onInput(Number(input.value)); });
    row.append(element("span", {}, label), input, readout);
    return row;
  }

  function latentSliders(root, spec) {
    const layers = decoder(spec);
    const [height, width] = spec.image_shape.slice(-2);
    const z = spec.z.slice();
    let label = spec.label === null ? 0 : spec.label;
    const canvas = element("canvas", { width, height, class: "vae-digit", role: "img" });
    canvas.style.width = `${width * spec.scale}px`;
    canvas.style.height = `${height * spec.scale}px`;
    const caption = element("div", { class: "vae-caption" });

    function draw() {
      const pixels = decode(spec, layers, z, label);
      const image = canvas.getContext("2d").createImageData(width, height);
      for (let i = 0; i < pixels.length; i++) { // dark ink on white, as in the notebook
        const grey = Math.round(255 * (1 - pixels[i]));
        image.data.set([grey, grey, grey, 255], 4 * i);
      }
      canvas.getContext("2d").putImageData(image, 0, 0);
      const shown = z.slice(0, 8).map((v) => v.toFixed(2)).join(", ");
      caption.textContent = (spec.num_classes ? `digit ${label}, ` : "") + `z = [${shown}]`;
      canvas.setAttribute("aria-label", `the decoder's image for ${caption.textContent}`);
      root.dataset.z = JSON.stringify(z);
      root.dataset.label = String(label);
    }

    const controls = element("div", { class: "vae-controls" });
    if (spec.num_classes) {
      const digits = element("select", { name: "digit", "aria-label": "digit (the label y)" });
      for (let c = 0; c < spec.num_classes; c++) digits.append(element("option", { value: c }, `digit ${c}`));
      digits.value = String(label);
      digits.addEventListener("change", () => { label = Number(digits.value); draw(); });
      controls.append(digits);
    }
    spec.dims.forEach((d) => {
      controls.append(slider(`z${d + 1}`, `z${d + 1}`, -spec.limit, spec.limit, spec.step, z[d],
        (v) => { z[d] = v; draw(); }));
    });
    root.append(controls, element("div", { class: "vae-picture" }), caption);
    root.querySelector(".vae-picture").append(canvas);
    draw();
  }

  // KL(N(mu, sigma^2) || N(0, 1)) = 1/2 (sigma^2 + mu^2 - 1 - ln sigma^2), in nats (notebook 03).
  function gaussianKL(mu, sigma) { return 0.5 * (sigma * sigma + mu * mu - 1 - Math.log(sigma * sigma)); }

  function klExplorer(root, spec) {
    let mu = spec.mu, sigma = spec.sigma;
    const width = 480, height = 240, xlim = 6;
    const canvas = element("canvas", { width, height, class: "vae-densities", role: "img" });
    const readout = element("div", { class: "vae-readout" });

    function density(x, m, s) { return Math.exp(-0.5 * ((x - m) / s) ** 2) / (s * Math.sqrt(2 * Math.PI)); }

    function draw() {
      const kl = gaussianKL(mu, sigma);
      readout.textContent = `KL(q || p) = ${kl.toFixed(4)} nats`;
      root.dataset.kl = String(kl);
      const ctx = canvas.getContext("2d");
      ctx.clearRect(0, 0, width, height);
      const top = Math.max(density(0, 0, 1), density(mu, mu, sigma)) * 1.1;
      const px = (x) => ((x + xlim) / (2 * xlim)) * (width - 40) + 30;
      const py = (y) => height - 25 - (y / top) * (height - 40);
      ctx.strokeStyle = "#555"; ctx.beginPath(); ctx.moveTo(30, height - 25); ctx.lineTo(width - 10, height - 25); ctx.stroke();
      ctx.fillStyle = "#222"; ctx.font = "12px sans-serif";
      for (let t = -xlim; t <= xlim; t += 2) ctx.fillText(String(t), px(t) - 4, height - 8);
      // the prior: dashed black; q: solid blue (told apart by dash and colour)
      [[0, 1, "#000000", [6, 4], "prior p(z) = N(0, 1)"], [mu, sigma, "#0072B2", [], `q(z) = N(${mu.toFixed(2)}, ${sigma.toFixed(2)}²)`]]
        .forEach(([m, s, colour, dash, name], k) => {
          ctx.strokeStyle = colour; ctx.setLineDash(dash); ctx.lineWidth = 2; ctx.beginPath();
          for (let i = 0; i <= 300; i++) {
            const x = -xlim + (2 * xlim * i) / 300;
            if (i === 0) ctx.moveTo(px(x), py(density(x, m, s))); else ctx.lineTo(px(x), py(density(x, m, s)));
          }
          ctx.stroke(); ctx.setLineDash([]);
          ctx.fillStyle = colour; ctx.fillText(name, width - 190, 18 + 16 * k);
        });
      canvas.setAttribute("aria-label", `densities of q(z) = N(${mu.toFixed(2)}, ${sigma.toFixed(2)} squared) and the prior N(0, 1); ${readout.textContent}`);
    }

    const controls = element("div", { class: "vae-controls" });
    controls.append(
      slider("mu", "μ", spec.mu_range[0], spec.mu_range[1], spec.step, mu, (v) => { mu = v; draw(); }),
      slider("sigma", "σ", spec.sigma_range[0], spec.sigma_range[1], spec.step, sigma, (v) => { sigma = v; draw(); }));
    root.append(controls, readout, canvas);
    draw();
  }

  function start() {
    const specs = window.VAE_WIDGETS || {};
    document.querySelectorAll(".vae-widget[data-widget]").forEach((root) => {
      const spec = specs[root.dataset.widget];
      if (!spec || root.dataset.ready) return;
      root.textContent = "";
      if (spec.kind === "latent") latentSliders(root, spec);
      else if (spec.kind === "kl") klExplorer(root, spec);
      root.dataset.ready = "true";
    });
  }

  window.vaeWidgets = { decode, gaussianKL, start };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
