import java.io.BufferedOutputStream;
import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import org.apache.jena.graph.Graph;
import org.apache.jena.graph.GraphUtil;
import org.apache.jena.graph.Node;
import org.apache.jena.graph.NodeFactory;
import org.apache.jena.riot.Lang;
import org.apache.jena.riot.RDFParser;
import org.apache.jena.riot.lang.LabelToNode;
import org.apache.jena.riot.out.NodeFmtLib;
import org.apache.jena.shacl.ShaclValidator;
import org.apache.jena.shacl.Shapes;
import org.apache.jena.shacl.ValidationReport;
import org.apache.jena.shacl.validation.ReportEntry;
import org.apache.jena.sparql.graph.GraphFactory;
import org.apache.jena.sparql.path.P_Link;
import org.apache.jena.sparql.path.Path;

/**
 * itkg's Apache Jena SHACL worker (see itkg/jena.py): validates batches of N-Triples sent on stdin.
 *
 * Protocol, all frames on stdin as a 4-byte big-endian length and that many bytes of UTF-8
 * N-Triples: the shapes graph, then the base graph (ontology and shared triples), then one frame
 * per batch; a length of -1 ends the run. For each batch the worker writes one line per result,
 * seven tab-separated N-Triples terms (focus node, path, value, source shape, severity, constraint
 * component, message; an empty field for none), then a line "END". Blank nodes keep the labels
 * they were sent with, so results can be matched to the caller's nodes; messages name the focus
 * node as pySHACL does. It reads nothing else and
 * opens no connection: the caller gives the graphs, and the shapes are itkg's own.
 */
public class ItkgJenaShacl {
    static Graph parse(byte[] bytes, Graph into) {
        RDFParser.create().source(new ByteArrayInputStream(bytes)).lang(Lang.NTRIPLES)
            .labelToNode(LabelToNode.createUseLabelAsGiven()).parse(into);
        return into;
    }

    static String term(Node n) {
        if (n == null) return "";
        if (n.isBlank()) return "_:" + n.getBlankNodeLabel();
        return NodeFmtLib.strNT(n);
    }

    static String path(Path p) {
        if (p == null) return "";
        if (p instanceof P_Link) return term(((P_Link) p).getNode());
        return NodeFmtLib.strNT(NodeFactory.createLiteral(p.toString()));
    }

    /**
     * The message with {$this} as pySHACL writes it: Jena substitutes the focus node in N-Triples
     * form (an IRI in angle brackets, a blank node as an encoded label), pySHACL its bare name.
     */
    static String message(ReportEntry e) {
        Node focus = e.focusNode();
        String text = e.message();
        if (focus.isURI()) return text.replace("<" + focus.getURI() + ">", focus.getURI());
        if (focus.isBlank()) return text.replace(NodeFmtLib.strNT(focus), focus.getBlankNodeLabel());
        return text;
    }

    static byte[] frame(DataInputStream in) throws IOException {
        int length = in.readInt();
        if (length < 0) return null;
        byte[] bytes = new byte[length];
        in.readFully(bytes);
        return bytes;
    }

    public static void main(String[] args) throws IOException {
        DataInputStream in = new DataInputStream(System.in);
        PrintStream out = new PrintStream(new BufferedOutputStream(System.out, 1 << 16), false, StandardCharsets.UTF_8);
        Shapes shapes = Shapes.parse(parse(frame(in), GraphFactory.createDefaultGraph()));
        Graph base = parse(frame(in), GraphFactory.createDefaultGraph());
        ShaclValidator validator = ShaclValidator.get();
        while (true) {
            byte[] batch;
            try {
                batch = frame(in);
            } catch (EOFException e) {
                return;
            }
            if (batch == null) return;
            Graph data = GraphFactory.createDefaultGraph();
            GraphUtil.addInto(data, base);
            parse(batch, data);
            ValidationReport report = validator.validate(shapes, data);
            StringBuilder line = new StringBuilder();
            for (ReportEntry e : report.getEntries()) {
                line.setLength(0);
                line.append(term(e.focusNode())).append('\t')
                    .append(path(e.resultPath())).append('\t')
                    .append(term(e.value())).append('\t')
                    .append(term(e.source())).append('\t')
                    .append(term(e.severity().level())).append('\t')
                    .append(term(e.sourceConstraintComponent())).append('\t')
                    .append(e.message() == null ? "" : NodeFmtLib.strNT(NodeFactory.createLiteral(message(e))));
                out.println(line);
            }
            out.println("END");
            out.flush();
        }
    }
}
